"""EnvBatch: subprocess envs match single envs; worker failures are clear and close the batch."""

import os
import signal

import numpy as np
import pytest

from genreward_jax.envs import EnvBatch, EnvConfig, MetaWorldEnv

SEEDS = (11, 12)
STEPS = 5


def _configs(**overrides):
    return [
        EnvConfig("pick-place", seed=s, time_limit=3, extra_size=80, **overrides) for s in SEEDS
    ]


@pytest.fixture(scope="module")
def batch():
    with EnvBatch(_configs()) as envs:
        yield envs


def test_batch_matches_single_envs_for_the_same_seeds(batch, random_actions):
    actions = random_actions(4, STEPS * len(SEEDS)).reshape(STEPS, len(SEEDS), 4)
    extra_schedule = [False, [True, False], True, False, [False, True]]
    batched = [batch.reset()]
    batched += [batch.step(a, render_extra=e) for a, e in zip(actions, extra_schedule, strict=True)]
    for index, config in enumerate(_configs()):
        env = MetaWorldEnv(config)
        try:
            single = [env.reset()]
            single += [
                env.step(actions[t, index], render_extra=bool(np.broadcast_to(e, 2)[index]))
                for t, e in enumerate(extra_schedule)
            ]
        finally:
            env.close()
        for t, (stacked, obs) in enumerate(zip(batched, single, strict=True)):
            for key, value in obs.items():
                np.testing.assert_array_equal(stacked[key][index], value, err_msg=f"{key} t={t}")
            if "extra_image" in stacked and "extra_image" not in obs:
                assert not stacked["extra_image"][index].any()  # zeros where not requested
    assert "extra_image" not in batched[0] and "extra_image" not in batched[4]
    assert batched[1]["image"].shape == (2, 64, 64, 3)
    assert batched[2]["extra_image"].shape == (2, 80, 80, 3)
    assert bool(batched[3]["is_last"].all()) and bool(batched[4]["is_first"].all())


def test_bad_batch_inputs_are_clear_errors(batch):
    with pytest.raises(ValueError, match=r"actions must have shape \(2, 4\)"):
        batch.step(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="render_extra must be"):
        batch.step(np.zeros((2, 4)), render_extra=[True, False, True])
    with pytest.raises(ValueError, match="share size"):
        EnvBatch([EnvConfig("pick-place", size=64), EnvConfig("pick-place", size=32)])
    with pytest.raises(ValueError, match="at least one"):
        EnvBatch([])


def test_worker_exception_reaches_the_parent_with_its_traceback():
    envs = EnvBatch(_configs(render=True)[:1])
    envs.reset()
    actions = np.zeros((1, 4))
    actions[0, 1] = np.nan  # passes the parent's shape check, fails in the worker
    with pytest.raises(RuntimeError, match=r"(?s)failed.*Worker traceback.*must be finite"):
        envs.step(actions)
    with pytest.raises(RuntimeError, match="closed"):
        envs.step(np.zeros((1, 4)))
    envs.close()  # idempotent


def test_dead_worker_is_a_clear_error():
    envs = EnvBatch([EnvConfig("reach", seed=0, render=False) for _ in range(2)])
    envs.reset()
    os.kill(envs._processes[1].pid, signal.SIGKILL)
    envs._processes[1].join(5)
    died = r"Env worker 1 \(reach-v3, seed 0\) died \(exit code -9\)"
    with pytest.raises(RuntimeError, match=died):
        envs.step(np.zeros((2, 4)))
    assert not any(p.is_alive() for p in envs._processes)
    envs.close()


def test_worker_construction_error_is_reported():
    config = EnvConfig("pick-place", seed=0)
    object.__setattr__(config, "camera", "missing-camera")  # bypass validation: fails in worker
    with pytest.raises(RuntimeError, match=r"(?s)Worker traceback.*Unknown camera"):
        EnvBatch([config])
