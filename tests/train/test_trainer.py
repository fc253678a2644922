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
from genreward_jax.trainer import Trainer, TrainerConfig

TIME_LIMIT = 20  # an episode spans 21 loop iterations (20 steps + the auto-reset step)
TRAIN_ENVS = [EnvConfig("reach", seed=s, time_limit=TIME_LIMIT) for s in (11, 12)]
EVAL_ENVS = [EnvConfig("reach", seed=99, time_limit=TIME_LIMIT)]


def _config(logdir, **overrides) -> TrainerConfig:
    values = dict(logdir=str(logdir), steps=120, train_ratio=32.0, batch_size=4, batch_length=8,
                  replay_capacity=1000, prefill=30, obs_keys=("state",), eval_every=10**6,
                  eval_episodes=1, eval_envs=1, video=False, checkpoint_every=50,
                  keep_checkpoints=2, log_every=40, seed=3)
    values.update(overrides)
    return TrainerConfig(**values)


class _SigtermAfter:
    """The real EnvBatch; sends SIGTERM to this process after `steps` steps of the batch."""

    act_dim = 4

    def __init__(self, configs, steps):
        self._envs = EnvBatch(configs)
        self._left = steps

    def reset(self, *args, **kwargs):
        return self._envs.reset(*args, **kwargs)

    def step(self, actions, *args, **kwargs):
        obs = self._envs.step(actions, *args, **kwargs)
        self._left -= 1
        if self._left == 0:
            os.kill(os.getpid(), signal.SIGTERM)
        return obs

    def close(self):
        self._envs.close()


def _signal_first_batch(steps):
    made = []

    def make(configs):
        made.append(configs)
        return _SigtermAfter(configs, steps) if len(made) == 1 else EnvBatch(configs)

    return make


def _assert_same_tree(a, b):
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _final_arrays(logdir, template):
    checkpointer = Checkpointer(os.path.join(logdir, "checkpoints"), keep=2)
    state, arrays, meta = checkpointer.restore(checkpointer.latest_step(), template)
    checkpointer.close()
    return state, arrays, meta


def _logged_steps(logdir):
    with open(os.path.join(logdir, "metrics.jsonl")) as f:
        return [json.loads(line)["step"] for line in f if "perf/env_steps_per_s" in line]


@pytest.mark.slow
def test_interrupted_and_killed_runs_resume_to_identical_parameters(tmp_path,
                                                                     tiny_agent_factory):
    full_dir, sig_dir, kill_dir = tmp_path / "full", tmp_path / "sigterm", tmp_path / "kill9"
    full = Trainer(_config(full_dir), tiny_agent_factory, TRAIN_ENVS, EVAL_ENVS,
                   stdout=False).run()
    assert full["status"] == "complete" and full["env_steps"] == 120
    assert full["updates"] == (120 - 30) * 32 // (4 * 8)
    assert sorted(int(s) for s in os.listdir(full_dir / "checkpoints")) == [100, 120]
    assert (full_dir / "learning_curve.png").exists()

    # SIGTERM after 40 iterations = env step 80, 19 steps into the second episode.
    stopped = Trainer(_config(sig_dir), tiny_agent_factory, TRAIN_ENVS, EVAL_ENVS,
                      make_envs=_signal_first_batch(40), stdout=False).run()
    assert stopped["status"] == f"interrupted by signal {int(signal.SIGTERM)}"
    assert stopped["env_steps"] == 80
    resumed = Trainer(_config(sig_dir), tiny_agent_factory, TRAIN_ENVS, EVAL_ENVS,
                      stdout=False).run()
    assert resumed["status"] == "complete" and resumed["updates"] == full["updates"]
    _assert_same_tree(full["train_state"], resumed["train_state"])
    assert resumed["eval"]["eval/return"] == full["eval"]["eval/return"]
    assert _logged_steps(sig_dir) == [40, 80, 120]

    # kill -9 after env step 100: only checkpoint 100 (mid-episode 3) and stale metrics remain.
    os.makedirs(kill_dir / "checkpoints")
    shutil.copytree(full_dir / "checkpoints" / "100", kill_dir / "checkpoints" / "100")
    shutil.copy(full_dir / "metrics.jsonl", kill_dir / "metrics.jsonl")
    killed = Trainer(_config(kill_dir), tiny_agent_factory, TRAIN_ENVS, EVAL_ENVS,
                     stdout=False).run()
    _assert_same_tree(full["train_state"], killed["train_state"])
    assert _logged_steps(kill_dir) == [40, 80, 120]

    # Replay contents, policy carry and env-loop state at the end are identical too.
    template = {"agent": full["train_state"], "carry": tiny_agent_factory(
        {"state": ((39,), np.float32)}, 4).initial_carry(len(TRAIN_ENVS))}
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
    with pytest.raises(ValueError, match="--logdir"):
        _config("")
