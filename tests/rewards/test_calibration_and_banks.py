"""Calibrated reward weights, goal-consistent placements and goal banks."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genreward_jax.envs import ACT_DIM, EnvConfig, MetaWorldEnv
from genreward_jax.goals import GoalFileError
from genreward_jax.replay_store import read_run_replay
from genreward_jax.rewards import fb
from genreward_jax.rewards.fb_extra_loss import FBExtraLoss, FBRewardSpec, reward_shares
from genreward_jax.rewards.goal_rewards import GoalRewards, RewardConfig, RunningStats
from genreward_jax.rewards.plugins import with_goal_placements
from preprocessing.goal_builder import GoalConfig, build_goal
from preprocessing.models import ModelSpec
from tests.tiny_runs import tiny_fb_extra, tiny_trainer_config

INTERVAL = 16
ALPHA = 0.3


def feed(rewards, steps, env_reward, seed=0):
    """Random frames through GoalRewards for `steps` steps of one 2-env episode."""
    rng = np.random.default_rng(seed)
    outs = []
    for step in range(steps):
        obs = {
            "image": rng.integers(0, 255, (2, 64, 64, 3), np.uint8),
            "reward": env_reward(step, rng).astype(np.float32),
            "is_first": np.full(2, step == 0),
            "is_last": np.full(2, step == steps - 1),
        }
        outs.append(rewards.process(obs))
    return outs


@pytest.mark.slow
def test_calibrated_video_term_is_alpha_times_env_spread_per_step(tiny_goal):
    rewards = GoalRewards(
        RewardConfig(
            goal_file=tiny_goal[0],
            alpha=ALPHA,
            video_interval=INTERVAL,
            reward_scaling="calibrated",
            video_variant="progress",
            episode_length=64,
        ),
        num_envs=2,
        image_size=64,
    )
    outs = feed(rewards, 65, lambda step, rng: rng.normal(2.0, 3.0, 2))
    raw = np.concatenate([o["r_video"][o["r_video"] != 0] for o in outs])
    assert len(raw) == 8
    env = np.concatenate([o["r_env"] for o in outs[1:]])
    term = np.concatenate([o["reward"] - o["r_env"] for o in outs])
    # Replay the running standardisation by hand: window j is scored with the stats of windows
    # 0..j and the env std of the steps so far.
    stats, expected = RunningStats(), []
    closes = [t for t, o in enumerate(outs) if (o["r_video"] != 0).any()]
    for t in closes:
        values = outs[t]["r_video"]
        stats.update(values)
        env_std = np.concatenate([o["r_env"] for o in outs[1:t]]).std()  # steps before t
        expected.append(ALPHA * env_std * INTERVAL * stats.standardise(values.astype(np.float64)))
    np.testing.assert_allclose(
        term[term != 0], np.concatenate(expected)[np.concatenate(expected) != 0], rtol=1e-4
    )
    assert rewards.env_stats.std == pytest.approx(env.std(), rel=1e-6)
    # One spike per window of I steps: spread over the window (what a reward head that cannot
    # time the spike learns), the term's per-step spread is α·σ_env, which is what α means.
    assert np.std(term[term != 0] / INTERVAL) == pytest.approx(ALPHA * env.std(), rel=0.5)
    metrics = rewards.metrics()
    assert {"rewards/video", "rewards/video_scaled", "rewards/env_scale"} <= set(metrics)


def test_logged_shares_and_spreads_cover_every_term(tiny_goal):
    """Over several episodes the log reports each term's per-step spread against the env
    reward's (α for the video term) and their shares of the per-episode reward variance (the
    VAE replaced by random window scores, FB by a given per-step reward)."""
    rewards = GoalRewards(
        RewardConfig(
            goal_file=tiny_goal[0],
            alpha=ALPHA,
            video_interval=INTERVAL,
            reward_scaling="calibrated",
            episode_length=32,
        ),
        num_envs=2,
        image_size=64,
    )
    rng = np.random.default_rng(1)
    rewards.video_reward_fn = lambda clips, target, first: rng.normal(0.9, 0.05, len(clips))
    rewards.metrics()
    for episode in range(8):
        offsets = rng.normal(0.0, 2.0, 2)
        for step in range(33):
            obs = {
                "image": rng.integers(0, 255, (2, 64, 64, 3), np.uint8),
                "reward": (offsets + rng.normal(0.0, 1.0, 2)).astype(np.float32),
                "is_first": np.full(2, step == 0),
                "is_last": np.full(2, step == 32),
            }
            rewards.process(obs)
            rewards.add_agent_reward(np.full(2, 0.1 * episode))  # the FB term grows over episodes
    metrics = rewards.metrics()
    assert metrics["rewards/video_step_spread_vs_env"] == pytest.approx(ALPHA, rel=0.3)
    shares = [metrics[f"rewards/share_{k}"] for k in ("env", "video", "fb")]
    assert sum(shares) == pytest.approx(1.0) and min(shares) > 0
    assert metrics["rewards/episodes"] == 16.0


def test_paper_scaling_keeps_the_release_formula(tiny_goal):
    rewards = GoalRewards(
        RewardConfig(
            goal_file=tiny_goal[0], alpha=ALPHA, video_interval=INTERVAL, reward_scaling="paper"
        ),
        num_envs=2,
        image_size=64,
    )
    for out in feed(rewards, 17, lambda step, rng: np.full(2, 0.5)):
        np.testing.assert_allclose(out["reward"], out["r_env"] + ALPHA * out["r_video"], rtol=1e-6)


def test_calibrated_fb_reward_uses_env_spread_and_q_normaliser():
    spec = FBRewardSpec(
        state_dim=6,
        action_dim=ACT_DIM,
        goal_feature=np.ones(5, np.float32),
        beta=0.25,
        freeze_after_updates=10,
    )
    extra = FBExtraLoss(fb.FBConfig(z_dim=4, hidden=8), spec)
    params, state = extra.init(jax.random.key(0))
    state = {
        **state,
        "norm": {"mean": jnp.float32(2.0), "var": jnp.float32(4.0), "count": jnp.float32(3.0)},
        "env_norm": {"mean": jnp.float32(0.0), "var": jnp.float32(9.0), "count": jnp.float32(3.0)},
    }
    feat = jnp.asarray(np.random.default_rng(0).normal(size=(7, 6)), jnp.float32)
    action = jnp.zeros((7, 4))
    reward, q = jax.jit(extra.transition_reward)(
        params, state, feat, action, jnp.zeros(7, jnp.int32)
    )
    np.testing.assert_allclose(reward, 0.25 * 3.0 * (q - 2.0) / 2.0, rtol=1e-4)
    paper = FBExtraLoss(extra.config, dataclasses.replace(spec, scaling="paper"))
    reward, q = jax.jit(paper.transition_reward)(
        params, state, feat, action, jnp.zeros(7, jnp.int32)
    )
    np.testing.assert_allclose(reward, 0.25 * q, rtol=1e-6)
    no_env = FBExtraLoss(extra.config, dataclasses.replace(spec, env_reward=False))
    assert float(no_env.env_scale(state)) == 1.0


def test_reward_shares():
    env = jnp.array([[1.0, 1.0], [3.0, 3.0], [5.0, 5.0]])
    video = jnp.array([[0.0, 1.0], [0.0, -1.0], [0.0, 0.0]])
    shares = reward_shares(env, env + video, jnp.zeros((3, 2)), env_on=True)
    var_env, var_video = np.var([2.0, 6.0, 10.0]), np.var([1.0, -1.0, 0.0])
    assert float(shares["share_video"]) == pytest.approx(var_video / (var_env + var_video))
    assert float(shares["share_fb"]) == 0.0
    assert float(shares["spread_video_vs_env"]) == pytest.approx(np.sqrt(var_video / var_env))


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    """A bank of two tiny scripted pick-place goals (env seeds 3 and 4)."""
    out = tmp_path_factory.mktemp("bank")
    paths = build_goal(
        GoalConfig(
            task="pick-place-v3",
            goal_source="scripted",
            out_dir=str(out),
            models=ModelSpec(mode="tiny", seed=0),
            resolution=64,
            num_sampled_frames=17,
            seed=3,
            placements=2,
            max_steps=64,
        )
    )
    return paths["bank"]


def test_placement_goal_starts_every_episode_at_the_goal_placement(tiny_goal):
    rewards = GoalRewards(RewardConfig(goal_file=tiny_goal[0]), num_envs=1, image_size=64)
    train = [EnvConfig("pick-place", seed=s, render=False, time_limit=4) for s in (11, 12)]
    train, evals = with_goal_placements(rewards, train, train[:1], "goal")
    assert all(c.placements == (tuple(tiny_goal[1].placement),) for c in train + evals)
    env = MetaWorldEnv(train[1])
    try:
        for _ in range(3):
            obs = env.reset()
            np.testing.assert_allclose(obs["state"], tiny_goal[1].states[0], atol=1e-5)
    finally:
        env.close()
    same, _ = with_goal_placements(rewards, train[:1], [], "random")
    assert same == train[:1]


def test_goal_bank_pairs_each_episode_with_its_own_goal(bank):
    rewards = GoalRewards(
        RewardConfig(
            goal_file=bank, video_interval=INTERVAL, video_variant="progress", episode_length=32
        ),
        num_envs=1,
        image_size=64,
    )
    assert rewards.num_goals == 2 and rewards.goal_features.shape[0] == 2
    assert rewards.placements[0] != rewards.placements[1]
    with pytest.raises(ValueError, match="placement=goal"):
        with_goal_placements(rewards, [], [], "random")
    config = EnvConfig("pick-place", seed=0, time_limit=32, placements=rewards.placements)
    env = MetaWorldEnv(config)
    seen = set()
    try:
        for _ in range(6):
            obs = env.reset()
            index = int(obs["placement"])
            seen.add(index)
            goal = rewards.goals[index][1]
            np.testing.assert_allclose(obs["state"], goal.states[0], atol=1e-5)
            batch = {k: np.asarray(v)[None] for k, v in obs.items()}
            out = rewards.process(batch)
            for _ in range(INTERVAL):
                obs = env.step(np.zeros(4, np.float32))
                out = rewards.process({k: np.asarray(v)[None] for k, v in obs.items()})
            # The closing window was scored against this episode's goal: redo it by hand.
            clip = rewards.windows.clips[:1].copy()  # slot 0 now starts the next window
            clip[0, 0] = rewards.windows.first_frames[0]
            target = index * rewards.windows_per_episode
            by_hand = rewards.video_reward_fn(
                clip, np.array([target]), rewards.windows.first_frames[:1]
            )
            np.testing.assert_allclose(out["r_video"], by_hand, rtol=1e-5)
            other = rewards.video_reward_fn(
                clip,
                np.array([(1 - index) * rewards.windows_per_episode]),
                rewards.windows.first_frames[:1],
            )
            assert abs(float(other[0]) - float(by_hand[0])) > 1e-6  # the goals differ
    finally:
        env.close()
    assert seen == {0, 1}
    spec = FBRewardSpec(
        state_dim=6,
        action_dim=ACT_DIM,
        goal_feature=rewards.goal_features,
        beta=1.0,
        freeze_after_updates=1,
    )
    extra = FBExtraLoss(fb.FBConfig(z_dim=4, hidden=8), spec)
    batch = {"placement": jnp.array([[0, 1, 1]]), "is_first": jnp.zeros((1, 3), bool)}
    np.testing.assert_array_equal(extra.goal_index(batch), [[0, 1, 1]])


def test_bank_errors(tmp_path, tiny_goal):
    path = tmp_path / "bank.json"
    path.write_text('{"goals": []}')
    with pytest.raises(GoalFileError, match="lists no goals"):
        GoalRewards(RewardConfig(goal_file=str(path)), num_envs=1, image_size=64)
    path.write_text("not json")
    with pytest.raises(GoalFileError, match="not a goal bank"):
        GoalRewards(RewardConfig(goal_file=str(path)), num_envs=1, image_size=64)


@pytest.mark.slow
def test_training_with_a_bank_stores_each_steps_goal(bank, tmp_path):
    """The real loop with a bank: replay records which goal each step's episode uses, and FB
    trains with both goals' features."""
    from genreward_jax.dreamer import Agent, preset
    from genreward_jax.trainer import Trainer

    rewards = GoalRewards(
        RewardConfig(
            goal_file=bank,
            video_interval=INTERVAL,
            reward_scaling="calibrated",
            video_variant="progress",
            episode_length=16,
        ),
        num_envs=1,
        image_size=64,
    )
    envs, evals = with_goal_placements(
        rewards,
        [EnvConfig("pick-place", seed=1, time_limit=16)],
        [EnvConfig("pick-place", seed=2, time_limit=16)],
        "goal",
    )
    config = preset("tiny")
    extra = tiny_fb_extra(rewards.goal_features, 0.5, config.feat_size)
    trainer_config = tiny_trainer_config(tmp_path)
    result = Trainer(
        trainer_config,
        lambda spec, act: Agent(config, spec, act, extra=extra),
        envs,
        evals,
        stdout=False,
        reward_model=rewards,
    ).run()
    assert int(result["train_state"].extra_state["updates"]) == result["updates"] > 0
    data = {k: np.asarray(v)[0] for k, v in read_run_replay(tmp_path)["data"].items()}
    stored = len(data["is_first"])
    placement, first = data["placement"][:stored], data["is_first"][:stored]
    starts = np.flatnonzero(first)
    assert len(starts) >= 4 and set(placement[starts].tolist()) == {0, 1}
    for a, b in zip(starts, [*starts[1:], stored], strict=True):
        assert (placement[a:b] == placement[a]).all()  # one goal per episode
        goal = rewards.goals[int(placement[a])][1]
        np.testing.assert_allclose(data["state"][a], goal.states[0], atol=1e-5)
    assert jax.tree.leaves(result["train_state"].extra_params)
