"""Training loop on real Meta-World envs with a tiny agent: determinism and exact resume.

One uninterrupted run is compared bitwise with (a) a run stopped by a real SIGTERM in the middle
of an episode and resumed, and (b) a "kill -9" run: only a mid-episode periodic checkpoint
survives (plus a metrics.jsonl with records past it) and the same command is rerun.
"""

import json
import os
import shutil
import signal

import jax
import numpy as np
import pytest

from genreward_jax.checkpoint import Checkpointer
from genreward_jax.envs import EnvBatch, EnvConfig
from genreward_jax.replay_store import REPLAY_DIR, read_run_replay
from genreward_jax.trainer import Trainer, TrainerConfig, train_start
from tests.tiny_runs import signal_first_batch, tiny_trainer_config

TIME_LIMIT = 20  # an episode spans 21 loop iterations (20 steps + the auto-reset step)
TRAIN_ENVS = [EnvConfig("reach", seed=s, time_limit=TIME_LIMIT) for s in (11, 12)]
EVAL_ENVS = [EnvConfig("reach", seed=99, time_limit=TIME_LIMIT)]


def _config(logdir, **overrides) -> TrainerConfig:
    values = dict(
        steps=120,
        train_ratio=32.0,
        batch_size=4,
        prefill=30,
        eval_envs=1,
        checkpoint_every=50,
        keep_checkpoints=2,
        seed=3,
    )
    return tiny_trainer_config(logdir, **{**values, **overrides})


def _assert_same_tree(a, b):
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _final_arrays(logdir, template):
    """(state, arrays with the replay's contents, meta without the replay chunks' versions:
    those say when each chunk was written, which differs between an interrupted and an
    uninterrupted run; the contents must not)."""
    checkpointer = Checkpointer(os.path.join(logdir, "checkpoints"), keep=2)
    state, arrays, meta = checkpointer.restore(checkpointer.latest_step(), template)
    checkpointer.close()
    meta.pop("replay_chunks")
    return state, {**arrays, "replay": read_run_replay(logdir)}, meta


def _logged_steps(logdir):
    with open(os.path.join(logdir, "metrics.jsonl")) as f:
        return [json.loads(line)["step"] for line in f if "perf/env_steps_per_s" in line]


@pytest.mark.slow
def test_interrupted_and_killed_runs_resume_to_identical_parameters(tmp_path, tiny_agent_factory):
    full_dir, sig_dir, kill_dir = tmp_path / "full", tmp_path / "sigterm", tmp_path / "kill9"
    full = Trainer(_config(full_dir), tiny_agent_factory, TRAIN_ENVS, EVAL_ENVS, stdout=False).run()
    assert full["status"] == "complete" and full["env_steps"] == 120
    assert full["updates"] == 1 + (120 - 4 * 8) * 32 // (4 * 8)  # from B x T > prefill 30
    assert sorted(int(s) for s in os.listdir(full_dir / "checkpoints")) == [100, 120]
    assert (full_dir / "learning_curve.png").exists()

    # SIGTERM after 40 iterations = env step 80, 19 steps into the second episode.
    stopped = Trainer(
        _config(sig_dir),
        tiny_agent_factory,
        TRAIN_ENVS,
        EVAL_ENVS,
        make_envs=signal_first_batch(40),
        stdout=False,
    ).run()
    assert stopped["status"] == f"interrupted by signal {int(signal.SIGTERM)}"
    assert stopped["env_steps"] == 80
    resumed = Trainer(
        _config(sig_dir), tiny_agent_factory, TRAIN_ENVS, EVAL_ENVS, stdout=False
    ).run()
    assert resumed["status"] == "complete" and resumed["updates"] == full["updates"]
    _assert_same_tree(full["train_state"], resumed["train_state"])
    assert resumed["eval"]["eval/return"] == full["eval"]["eval/return"]
    assert _logged_steps(sig_dir) == [40, 80, 120]

    # kill -9 after env step 100: only checkpoint 100 (mid-episode 3), the replay chunks on
    # disk and stale metrics remain.
    os.makedirs(kill_dir / "checkpoints")
    shutil.copytree(full_dir / "checkpoints" / "100", kill_dir / "checkpoints" / "100")
    shutil.copytree(full_dir / REPLAY_DIR, kill_dir / REPLAY_DIR)
    shutil.copy(full_dir / "metrics.jsonl", kill_dir / "metrics.jsonl")
    killed = Trainer(
        _config(kill_dir), tiny_agent_factory, TRAIN_ENVS, EVAL_ENVS, stdout=False
    ).run()
    _assert_same_tree(full["train_state"], killed["train_state"])
    assert _logged_steps(kill_dir) == [40, 80, 120]

    # Replay contents, policy carry and env-loop state at the end are identical too.
    template = {
        "agent": full["train_state"],
        "carry": tiny_agent_factory({"state": ((39,), np.float32)}, 4).initial_carry(
            len(TRAIN_ENVS)
        ),
    }
    want = _final_arrays(full_dir, template)
    for other in (sig_dir, kill_dir):
        got = _final_arrays(other, template)
        _assert_same_tree(want[0], got[0])
        _assert_same_tree(want[1], got[1])
        assert want[2] == got[2]


def test_bad_trainer_configs_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="--batch_size must be a positive integer"):
        _config(tmp_path, batch_size=0)
    with pytest.raises(ValueError, match="--train_ratio"):
        _config(tmp_path, train_ratio=float("nan"))
    with pytest.raises(ValueError, match="--prefill"):
        _config(tmp_path, prefill=-1)
    with pytest.raises(ValueError, match="--eval_mode must be one of"):
        _config(tmp_path, eval_mode="greedy")
    with pytest.raises(ValueError, match="--logdir"):
        _config("")


class _Recorder:
    """Wraps the tiny agent and the real env batch to record what the loop does: the env step
    at each update, the actions the policy returned and the actions the envs received."""

    def __init__(self, factory):
        self.factory = factory
        self.env_steps = self.batches = 0
        self.update_steps, self.policy_actions, self.env_actions = [], [], []

    def agent(self, obs_spec, act_dim):
        agent, recorder = self.factory(obs_spec, act_dim), self

        class Recorded:
            def __getattr__(self, name):
                return getattr(agent, name)

            def policy(self, *args):
                action, carry = agent.policy(*args)
                if args[-1] == "train":
                    recorder.policy_actions.append(np.asarray(action))
                return action, carry

            def train(self, *args):
                recorder.update_steps.append(recorder.env_steps)
                return agent.train(*args)

        return Recorded()

    def envs(self, configs):
        """The first batch made is the training one; eval batches are not recorded."""
        envs, recorder = EnvBatch(configs), self
        self.batches += 1
        if self.batches > 1:
            return envs

        class Recorded:
            def __getattr__(self, name):
                return getattr(envs, name)

            def step(self, actions, *args, **kwargs):
                recorder.env_actions.append(np.asarray(actions))
                recorder.env_steps += len(configs)
                return envs.step(actions, *args, **kwargs)

        return Recorded()


@pytest.mark.parametrize("prefill", [0, 10])
def test_start_of_training(tmp_path, tiny_agent_factory, prefill):
    """Default (prefill 0, the official start): policy actions from the first step and the first
    update once replay holds batch_size x batch_length = 32 steps. With a random prefill, its
    steps act uniformly at random but replay still stores the policy filter's posteriors."""
    recorder = _Recorder(tiny_agent_factory)
    config = _config(tmp_path, steps=40, prefill=prefill, checkpoint_every=40)
    result = Trainer(
        config, recorder.agent, TRAIN_ENVS, EVAL_ENVS, make_envs=recorder.envs, stdout=False
    ).run()
    assert train_start(config) == 32
    assert TrainerConfig(logdir=str(tmp_path)).prefill == 0  # the official start by default
    assert recorder.update_steps[0] == 32 and result["updates"] == 1 + (40 - 32) * 32 // 32
    random_iterations = prefill // len(TRAIN_ENVS)
    sent, chosen = np.stack(recorder.env_actions), np.stack(recorder.policy_actions)
    assert len(sent) == len(chosen) == 40 // len(TRAIN_ENVS)
    live = slice(random_iterations, None)
    np.testing.assert_array_equal(
        sent[live][np.any(sent[live] != 0, -1)], chosen[live][np.any(sent[live] != 0, -1)]
    )
    if prefill:
        uniform = np.stack(
            [
                np.random.default_rng([config.seed, 2 * i]).uniform(-1, 1, (2, 4))
                for i in range(random_iterations)
            ]
        ).astype(np.float32)
        np.testing.assert_array_equal(sent[:random_iterations], uniform)
        assert not np.allclose(sent[:random_iterations], chosen[:random_iterations])
    carry = tiny_agent_factory({"state": ((39,), np.float32)}, 4).initial_carry(len(TRAIN_ENVS))
    _, arrays, _ = _final_arrays(tmp_path, {"agent": result["train_state"], "carry": carry})
    deter = np.asarray(arrays["replay"]["context"]["deter"], np.float32)
    assert np.abs(deter[:, : max(random_iterations, 5)]).max() > 0  # posteriors, not zeros
