"""The full GenReward loop on real Meta-World envs with a tiny agent: what lands in replay, FB
training inside the agent's step, and exact resume with the goal rewards' window state."""

import jax
import numpy as np
import pytest

from genreward_jax.dreamer import Agent, preset
from genreward_jax.envs import EnvConfig
from genreward_jax.replay_store import read_run_replay
from genreward_jax.rewards.goal_rewards import GoalRewards, RewardConfig
from genreward_jax.trainer import Trainer
from tests.tiny_runs import tiny_fb_extra, tiny_trainer_config

TIME_LIMIT = 32
INTERVAL = 16
ALPHA = 0.5
TRAIN_ENVS = [EnvConfig("reach", seed=5, time_limit=TIME_LIMIT)]
EVAL_ENVS = [EnvConfig("reach", seed=99, time_limit=TIME_LIMIT)]


@pytest.fixture(scope="module")
def agent_factory(tiny_goal):
    """One compiled tiny agent with FB for the module (the goal feature is fixed per goal)."""
    rewards = GoalRewards(
        RewardConfig(goal_file=tiny_goal[0], video_interval=INTERVAL), num_envs=1, image_size=64
    )
    config = preset("tiny")
    extra = tiny_fb_extra(rewards.goal_feature, 0.1, config.feat_size)
    agents = {}

    def factory(obs_spec, act_dim):
        if "agent" not in agents:
            agents["agent"] = Agent(config, obs_spec, act_dim, extra=extra)
        return agents["agent"]

    return factory


def run(logdir, tiny_goal, agent_factory, steps):
    rewards = GoalRewards(
        RewardConfig(goal_file=tiny_goal[0], alpha=ALPHA, video_interval=INTERVAL),
        num_envs=1,
        image_size=64,
    )
    config = tiny_trainer_config(logdir, steps=steps, keep_checkpoints=2, log_every=33, seed=1)
    return Trainer(
        config, agent_factory, TRAIN_ENVS, EVAL_ENVS, stdout=False, reward_model=rewards
    ).run()


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tiny_goal, agent_factory):
    logdir = tmp_path_factory.mktemp("full")
    return logdir, run(logdir, tiny_goal, agent_factory, steps=70)


@pytest.mark.slow
def test_replay_holds_goal_reward_entries(full_run):
    logdir, _ = full_run
    data = {k: np.asarray(v)[0] for k, v in read_run_replay(logdir)["data"].items()}
    steps_in_episode = np.zeros(len(data["is_first"]), np.int64)
    for t in range(1, len(steps_in_episode)):
        steps_in_episode[t] = 0 if data["is_first"][t] else steps_in_episode[t - 1] + 1
    closes = (steps_in_episode > 0) & (steps_in_episode % INTERVAL == 0)
    assert closes.sum() >= 3
    assert np.all(data["r_video"][~closes] == 0) and np.all(data["r_video"][closes] != 0)
    np.testing.assert_allclose(data["reward"], data["r_env"] + ALPHA * data["r_video"], rtol=1e-6)
    assert data["dino"].shape[1] > 0 and np.isfinite(data["dino"]).all()
    assert np.std(data["dino"], axis=0).max() > 0  # features follow the frames


@pytest.mark.slow
def test_fb_trains_inside_the_loop_and_resume_is_exact(
    full_run, tmp_path, tiny_goal, agent_factory
):
    _, result = full_run
    assert int(result["train_state"].extra_state["updates"]) == result["updates"] > 0
    logdir = tmp_path / "resumed"
    first = run(logdir, tiny_goal, agent_factory, steps=45)
    assert first["env_steps"] == 45
    resumed = run(logdir, tiny_goal, agent_factory, steps=70)
    for a, b in zip(
        jax.tree.leaves(result["train_state"]), jax.tree.leaves(resumed["train_state"]), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
