"""The overlapped loop (--loop=async): the rate limiter's two rules, a real run on Meta-World
with the tiny agent that keeps them (recorded at every env step and update), checkpoints and
resumes (after a SIGTERM too), and hands a learner thread's error to the caller; and
--policy_device, which must not change what the synchronous loop computes."""

import os
import signal
import threading
import time

import jax
import numpy as np
import pytest

from genreward_jax.async_loop import RateLimiter
from genreward_jax.envs import EnvBatch, EnvConfig
from genreward_jax.policy_params import parse_policy_device
from genreward_jax.trainer import Trainer, updates_due
from tests.tiny_runs import signal_first_batch, tiny_trainer_config

TRAIN_ENVS = [EnvConfig("reach", seed=s, time_limit=20) for s in (11, 12)]
EVAL_ENVS = [EnvConfig("reach", seed=99, time_limit=20)]


def _config(logdir, **overrides):
    values = dict(steps=120, batch_size=4, prefill=0, checkpoint_every=60, keep_checkpoints=2)
    return tiny_trainer_config(logdir, **{**values, **overrides})


def _owed(env_steps: int) -> int:
    """One update per 4 env steps from env step 8 on."""
    return 0 if env_steps < 8 else 1 + (env_steps - 8) // 4


def test_rate_limiter_keeps_both_threads_within_their_bounds():
    limiter = RateLimiter(_owed, max_ahead=12, env_steps=0, updates=0)
    violations, log = [], []

    def learner():
        while limiter.wait_to_learn():
            if limiter.updates >= _owed(limiter.env_steps):
                violations.append(("learner ahead", limiter.updates, limiter.env_steps))
            time.sleep(0.001)  # a slow learner: the actor must wait for it
            limiter.learned()

    thread = threading.Thread(target=learner)
    thread.start()
    env_steps = 0
    while env_steps < 200:
        assert limiter.wait_to_act(env_steps + 2)
        if limiter.updates < _owed(env_steps + 2 - 12):
            violations.append(("actor ahead", limiter.updates, env_steps))
        env_steps += 2
        limiter.acted(env_steps)
        log.append((env_steps, limiter.updates))
    assert limiter.wait_for_learning(_owed(200))
    with limiter.paused():  # holds the learner: no update while a checkpoint is written
        held = limiter.updates
        limiter.acted(240)
        time.sleep(0.05)
        assert limiter.updates == held
    assert limiter.wait_for_learning(_owed(240))
    limiter.stop()
    thread.join(timeout=10)
    assert not thread.is_alive() and not violations
    assert limiter.updates == _owed(240)
    # The actor did run ahead (the overlap), by at most 12 env steps' worth of updates.
    behind = [_owed(steps) - updates for steps, updates in log]
    assert 0 < max(behind) <= 3  # owed(e) - owed(e - 12) <= 3 for one update per 4 steps
    # A stopped limiter releases every wait.
    assert not limiter.wait_to_act(10**6) and not limiter.wait_to_learn()


class _Watched:
    """The tiny agent and the real envs, recording at every env step and update the counters
    the rate limiter must keep apart."""

    def __init__(self, factory, fail_at_update=None):
        self.factory, self.fail_at_update = factory, fail_at_update
        self.env_steps = self.updates_done = 0
        self.at_update, self.at_step, self.threads = [], [], set()

    def agent(self, obs_spec, act_dim):
        agent, watch = self.factory(obs_spec, act_dim), self

        class Watched:
            def __getattr__(self, name):
                return getattr(agent, name)

            def train(self, *args):
                watch.threads.add(threading.current_thread().name)
                watch.at_update.append((watch.updates_done, watch.env_steps))
                if watch.updates_done == watch.fail_at_update:
                    raise RuntimeError("the learner broke")
                out = agent.train(*args)
                jax.block_until_ready(out[0])
                watch.updates_done += 1
                return out

        return Watched()

    def envs(self, configs):
        envs, watch = EnvBatch(configs), self
        if len(configs) != len(TRAIN_ENVS):
            return envs

        class Watched:
            def __getattr__(self, name):
                return getattr(envs, name)

            def step(self, actions, *args, **kwargs):
                watch.at_step.append((watch.env_steps, watch.updates_done))
                watch.env_steps += len(configs)
                return envs.step(actions, *args, **kwargs)

        return Watched()


def test_async_run_keeps_the_train_ratio_checkpoints_and_resumes(tmp_path, tiny_agent_factory):
    cfg = _config(tmp_path / "run", steps=60, loop="async", actor_max_ahead=8)
    watch = _Watched(tiny_agent_factory)
    first = Trainer(
        cfg, watch.agent, TRAIN_ENVS, EVAL_ENVS, make_envs=watch.envs, stdout=False
    ).run()
    assert first["status"] == "complete" and first["updates"] == updates_due(cfg, 60)
    assert watch.threads == {"learner"}  # training ran in the learner thread only
    for update, env_steps in watch.at_update:
        assert update < updates_due(cfg, env_steps)  # never ahead of the train ratio
    for env_steps, done in watch.at_step:
        assert done >= updates_due(cfg, env_steps + 2 - 8)  # never > 8 env steps ahead
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["60"]

    # The same run, longer: it resumes from its checkpoint, a SIGTERM 20 env-batch steps later
    # (the resume's own replay of the episode so far counts) stops both threads and
    # checkpoints, and the rerun finishes from there.
    longer = _config(tmp_path / "run", steps=120, loop="async", actor_max_ahead=8)
    stopped = Trainer(
        longer,
        tiny_agent_factory,
        TRAIN_ENVS,
        EVAL_ENVS,
        make_envs=signal_first_batch(20),
        stdout=False,
    ).run()
    assert stopped["status"] == f"interrupted by signal {int(signal.SIGTERM)}"
    stop = stopped["env_steps"]
    assert 60 < stop < 120 and stopped["updates"] <= updates_due(cfg, stop)
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints"), key=int) == ["60", str(stop)]
    resumed = Trainer(longer, tiny_agent_factory, TRAIN_ENVS, EVAL_ENVS, stdout=False).run()
    assert resumed["status"] == "complete" and resumed["updates"] == updates_due(cfg, 120)
    moved = [
        float(np.abs(np.asarray(a) - np.asarray(b)).max())
        for a, b in zip(
            jax.tree.leaves(first["train_state"].params),
            jax.tree.leaves(resumed["train_state"].params),
            strict=True,
        )
    ]
    assert max(moved) > 0 and all(np.isfinite(moved))
    logged = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert '"perf/learner_share_train"' in logged and '"perf/share_env"' in logged


def test_a_learner_error_reaches_the_caller(tmp_path, tiny_agent_factory):
    watch = _Watched(tiny_agent_factory, fail_at_update=2)
    cfg = _config(tmp_path, steps=80, loop="async")
    with pytest.raises(RuntimeError, match="the learner broke"):
        Trainer(cfg, watch.agent, TRAIN_ENVS, EVAL_ENVS, make_envs=watch.envs, stdout=False).run()
    assert watch.updates_done == 2


def test_policy_on_its_own_device_computes_what_the_sync_loop_computes(
    tmp_path, tiny_agent_factory
):
    """On this CPU-only machine 'cpu' is the train device too, so a run with the policy's own
    copy must end bitwise where the run acting with the train state itself ends."""
    runs = {
        spec: Trainer(
            _config(tmp_path / (spec or "shared"), steps=60, loop="sync", policy_device=spec),
            tiny_agent_factory,
            TRAIN_ENVS,
            EVAL_ENVS,
            stdout=False,
        ).run()
        for spec in ("", "cpu")
    }
    for a, b in zip(
        jax.tree.leaves(runs[""]["train_state"]),
        jax.tree.leaves(runs["cpu"]["train_state"]),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_bad_loop_flags_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="--loop must be one of"):
        _config(tmp_path, loop="threads")
    with pytest.raises(ValueError, match="--policy_refresh must be a positive integer"):
        _config(tmp_path, policy_refresh=0)
    with pytest.raises(ValueError, match="--policy_device must be empty"):
        _config(tmp_path, policy_device="gpu0")
    assert parse_policy_device(" 1 ") == 1 and parse_policy_device("") is None
    with pytest.raises(ValueError, match="--actor_max_ahead=1 must be at least --num_envs=2"):
        Trainer(_config(tmp_path, loop="async", actor_max_ahead=1), None, TRAIN_ENVS, EVAL_ENVS)
    with pytest.raises(ValueError, match="--policy_device=7: this process has 1 local device"):
        Trainer(_config(tmp_path, policy_device="7"), None, TRAIN_ENVS, EVAL_ENVS)
