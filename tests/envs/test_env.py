"""MetaWorldEnv semantics: seeding, episode boundaries, reward schedules, action repeat."""

import numpy as np
import pytest

from genreward_jax.envs import EnvConfig, MetaWorldEnv, observation_spec


def _rollout(config: EnvConfig, actions: np.ndarray) -> list[dict]:
    env = MetaWorldEnv(config)
    try:
        observations = [env.reset()]
        observations += [env.step(action) for action in actions]
        return observations
    finally:
        env.close()


def test_same_seed_same_episodes_frames_and_states(random_actions):
    config = EnvConfig("pick-place", seed=7, time_limit=6)
    actions = random_actions(0, 14)  # crosses two automatic resets
    first, second = _rollout(config, actions), _rollout(config, actions)
    for a, b in zip(first, second, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_positions_rerandomised_each_episode_and_differ_across_seeds(object_and_goal):
    def episode_starts(seed):
        env = MetaWorldEnv(EnvConfig("pick-place", seed=seed, render=False))
        try:
            return [object_and_goal(env.reset()) for _ in range(3)]
        finally:
            env.close()

    seed_a, seed_a_again, seed_b = episode_starts(3), episode_starts(3), episode_starts(4)
    np.testing.assert_array_equal(np.stack(seed_a), np.stack(seed_a_again))
    for one, other in [(0, 1), (1, 2), (0, 2)]:
        assert np.abs(seed_a[one] - seed_a[other]).max() > 1e-3
    for a, b in zip(seed_a, seed_b, strict=True):
        assert np.abs(a - b).max() > 1e-3


def test_observation_matches_spec():
    config = EnvConfig("bin-picking", seed=0, size=32)
    observations = _rollout(config, np.zeros((2, 4), np.float32))
    spec = observation_spec(config)
    for obs in observations:
        assert obs.keys() == spec.keys()
        for key, (shape, dtype) in spec.items():
            assert np.shape(obs[key]) == shape and np.asarray(obs[key]).dtype == dtype, key
    no_proprio = EnvConfig("bin-picking", seed=0, size=32, proprio=False)
    assert "state" not in _rollout(no_proprio, np.zeros((1, 4)))[-1]


def test_time_limit_and_automatic_reset(random_actions, object_and_goal):
    time_limit = 5
    observations = _rollout(
        EnvConfig("shelf-place", seed=1, time_limit=time_limit, render=False),
        random_actions(1, 2 * time_limit + 2),
    )
    is_first = [bool(o["is_first"]) for o in observations]
    is_last = [bool(o["is_last"]) for o in observations]
    # reset, 5 steps (last one is_last), auto-reset (is_first), 5 steps, auto-reset.
    assert is_first == [True] + [False] * 5 + [True] + [False] * 5 + [True]
    assert is_last == [False] * 5 + [True] + [False] * 5 + [True] + [False]
    assert not any(bool(o["is_terminal"]) for o in observations)
    for restart in (6, 12):
        assert observations[restart]["reward"] == 0 and observations[restart]["dense_reward"] == 0
    assert np.abs(object_and_goal(observations[0]) - object_and_goal(observations[6])).max() > 1e-3


def test_sparse_reward_is_dense_reward_of_each_window_closing_step(random_actions):
    actions = random_actions(2, 20)
    common = dict(task="pick-place", seed=5, time_limit=9, render=False)
    dense = _rollout(EnvConfig(**common), actions)
    sparse = _rollout(EnvConfig(**common, reward_mode="sparse", sparse_interval=3), actions)
    t = 0
    closing_rewards = []
    for dense_obs, sparse_obs in zip(dense, sparse, strict=True):
        t = 0 if sparse_obs["is_first"] else t + 1
        assert sparse_obs["dense_reward"] == dense_obs["reward"]
        if t > 0 and t % 3 == 0:
            assert sparse_obs["reward"] == dense_obs["reward"]
            closing_rewards.append(float(sparse_obs["reward"]))
        else:
            assert sparse_obs["reward"] == 0
    assert len(closing_rewards) == 6 and min(closing_rewards) > 0  # steps 3, 6, 9 twice


def test_action_repeat_sums_rewards_and_counts_agent_steps(random_actions):
    actions = random_actions(3, 4)
    single = _rollout(EnvConfig("pick-place", seed=2, render=False), np.repeat(actions, 2, 0))
    repeated_env = MetaWorldEnv(
        EnvConfig("pick-place", seed=2, render=False, action_repeat=2, time_limit=4)
    )
    try:
        repeated = [repeated_env.reset()] + [repeated_env.step(a) for a in actions]
        assert repeated_env.step_count == 4
    finally:
        repeated_env.close()
    for k in range(1, 5):
        np.testing.assert_array_equal(repeated[k]["state"], single[2 * k]["state"])
        expected = np.float32(float(single[2 * k - 1]["reward"]) + float(single[2 * k]["reward"]))
        np.testing.assert_allclose(repeated[k]["reward"], expected, rtol=1e-6)
    assert [bool(o["is_last"]) for o in repeated] == [False, False, False, False, True]


def test_bad_actions_are_rejected():
    env = MetaWorldEnv(EnvConfig("pick-place", seed=0, render=False))
    try:
        env.reset()
        with pytest.raises(ValueError, match="shape"):
            env.step(np.zeros(3))
        with pytest.raises(ValueError, match="finite"):
            env.step(np.array([0.0, np.nan, 0.0, 0.0]))
    finally:
        env.close()
    env.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        env.reset()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(task="pick-plaec"), "Unknown Meta-World task 'pick-plaec'.*pick-place-v3"),
        (dict(camera="front"), "Unknown camera 'front'.*corner2"),
        (dict(reward_mode="dense+"), "Unknown reward_mode.*sparse"),
        (dict(size=0), "size must be >= 1"),
        (dict(time_limit=-3), "time_limit must be >= 1"),
        (dict(action_repeat=1.5), "action_repeat must be an int"),
        (dict(sparse_interval=0), "sparse_interval must be >= 1"),
        (dict(seed=-1), "seed must be in"),
        (dict(extra_size=0), "extra_size must be >= 1"),
        (dict(render=False, extra_size=64), "extra_size needs render=True"),
        (dict(proprio="yes"), "proprio must be a bool"),
    ],
)
def test_bad_config_is_a_clear_error(overrides, message):
    with pytest.raises(ValueError, match=message):
        EnvConfig(**{"task": "pick-place", **overrides})
