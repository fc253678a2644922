"""Replay: uniform sequence sampling, write-head and episode boundaries, online queue, context."""

import numpy as np
import pytest

from genreward_jax.replay import Replay, ReplayConfig, SampleIndex, memory_bytes

STEP_SPEC = {
    "image": ((4, 4, 3), np.uint8),
    "step_id": ((), np.int64),
    "action": ((2,), np.float32),
    "is_first": ((), bool),
}
CONTEXT_SPEC = {"deter": ((3,), np.float32), "stoch": {"onehot": ((2, 2), np.float32)}}


def _step(num_envs: int, t: int, episode_len: int = 7) -> dict[str, np.ndarray]:
    """Step t of every env; step_id encodes (env, t) so a sample reveals where it came from."""
    ids = np.arange(num_envs) * 100_000 + t
    return {
        "image": np.broadcast_to(
            (ids % 251).astype(np.uint8)[:, None, None, None], (num_envs, 4, 4, 3)
        ).copy(),
        "step_id": ids,
        "action": np.stack([ids, -ids], -1).astype(np.float32),
        "is_first": np.full(num_envs, t % episode_len == 0),
    }


def _fill(replay: Replay, steps: int, start: int = 0) -> None:
    for t in range(start, start + steps):
        replay.add(_step(replay.config.num_envs, t))


def test_uniform_over_all_valid_sequences_after_wraparound():
    config = ReplayConfig(capacity=40, num_envs=2, length=5, online=False, seed=1)
    replay = Replay(config, STEP_SPEC)
    _fill(replay, 33)  # per-env capacity 20: steps 13..32 remain, starts 13..28 are valid
    assert replay.valid_starts() == (13, 28)
    assert replay.num_sequences == 2 * 16
    counts = np.zeros((2, 16))
    draws = 0
    for _ in range(200):
        sample = replay.sample(64)
        ids = sample.data["step_id"]  # [B, L]
        env, t0 = ids[:, 0] // 100_000, ids[:, 0] % 100_000
        # Contiguous steps of one env, never past the write head nor into overwritten slots.
        np.testing.assert_array_equal(ids, ids[:, :1] + np.arange(5)[None])
        assert t0.min() >= 13 and t0.max() + 4 <= 32
        np.testing.assert_array_equal(env, sample.index.env)
        np.testing.assert_array_equal(t0, sample.index.start)
        np.testing.assert_array_equal(sample.data["image"][:, :, 0, 0, 0], ids % 251)
        np.add.at(counts, (env, t0 - 13), 1)
        draws += 64
    expected = draws / 32
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert counts.min() > 0
    assert chi2 < 61.1, chi2  # 31 degrees of freedom, p = 0.001


def test_before_wraparound_only_written_steps_are_sampled():
    replay = Replay(ReplayConfig(capacity=100, num_envs=1, length=5, online=False), STEP_SPEC)
    _fill(replay, 4)
    assert replay.num_sequences == 0
    with pytest.raises(ValueError, match="not yet one sequence"):
        replay.sample(2)
    _fill(replay, 3, start=4)  # 7 steps -> starts 0, 1, 2
    starts = {int(s) for _ in range(50) for s in replay.sample(8).index.start}
    assert starts == {0, 1, 2}


def test_sequences_cross_episode_boundaries_with_is_first_marking_them():
    replay = Replay(ReplayConfig(capacity=40, num_envs=1, length=10, online=False), STEP_SPEC)
    _fill(replay, 40)
    sample = replay.sample(256)
    ids = sample.data["step_id"]
    np.testing.assert_array_equal(sample.data["is_first"][:, 1:], ids[:, 1:] % 7 == 0)
    assert sample.data["is_first"][:, 1:].any()  # some sequences straddle an episode start


def test_online_queue_serves_each_fresh_window_once_then_uniform():
    replay = Replay(ReplayConfig(capacity=60, num_envs=3, length=4, seed=0), STEP_SPEC)
    _fill(replay, 8)  # two complete windows per env: starts 0 and 4
    assert replay.online_size == 6
    first = replay.sample(4)
    np.testing.assert_array_equal(first.index.env, [0, 1, 2, 0])
    np.testing.assert_array_equal(first.index.start, [0, 0, 0, 4])
    second = replay.sample(5)
    np.testing.assert_array_equal(second.index.env[:2], [1, 2])
    np.testing.assert_array_equal(second.index.start[:2], [4, 4])
    assert replay.online_size == 0
    _fill(replay, 4, start=8)
    assert replay.online_size == 3
    np.testing.assert_array_equal(replay.sample(3).index.start, [8, 8, 8])


def test_online_sequences_overwritten_before_sampling_are_dropped():
    replay = Replay(ReplayConfig(capacity=8, num_envs=1, length=4), STEP_SPEC)
    _fill(replay, 12)  # windows 0, 4, 8 queued; slots now hold steps 4..11
    sample = replay.sample(2)
    np.testing.assert_array_equal(sample.index.start, [4, 8])


def test_context_write_back_and_first_step_context():
    replay = Replay(
        ReplayConfig(capacity=30, num_envs=1, length=5, online=False), STEP_SPEC, CONTEXT_SPEC
    )
    _fill(replay, 30)
    index = SampleIndex(env=np.array([0, 0]), start=np.array([3, 10]))
    t = index.start[:, None] + np.arange(5)[None]  # [B, L]
    context = {
        "deter": np.repeat(t[..., None], 3, -1).astype(np.float32),
        "stoch": {"onehot": np.broadcast_to(t[..., None, None], (2, 5, 2, 2)).astype(np.float32)},
    }
    replay.write_context(index, context)
    # Training-steps variant: [B, L - 1] written to steps 1..L-1 of the sequence starting at 20.
    replay.write_context(
        SampleIndex(np.array([0]), np.array([20])),
        {
            "deter": np.full((1, 4, 3), 7.0, np.float32),
            "stoch": {"onehot": np.full((1, 4, 2, 2), 7.0, np.float32)},
        },
    )
    seen = {}
    for _ in range(40):
        sample = replay.sample(16)
        for start, deter, onehot in zip(
            sample.index.start,
            sample.context["deter"],
            sample.context["stoch"]["onehot"],
            strict=True,
        ):
            seen[int(start)] = (deter[0, 0], onehot[0, 1, 1])
    for start in range(26):
        written = 3 <= start <= 7 or 10 <= start <= 14
        want = float(start) if written else 7.0 if 21 <= start <= 24 else 0.0
        assert seen[start] == (want, want), (start, seen[start])


def test_context_write_skips_steps_overwritten_since_sampling():
    replay = Replay(
        ReplayConfig(capacity=10, num_envs=1, length=5, online=False), STEP_SPEC, CONTEXT_SPEC
    )
    _fill(replay, 10)
    index = replay.sample(1).index._replace(start=np.array([0]))
    _fill(replay, 3, start=10)  # steps 0..2 overwritten by 10..12
    ones = {
        "deter": np.ones((1, 5, 3), np.float32),
        "stoch": {"onehot": np.ones((1, 5, 2, 2), np.float32)},
    }
    replay.write_context(index, ones)
    deter = replay.state_dict()["context"]["deter"][0, :, 0]  # slot order: slot i = step i or i+10
    np.testing.assert_array_equal(deter, [0, 0, 0, 1, 1, 0, 0, 0, 0, 0])


def test_state_dict_round_trip_is_bitwise_and_continues_identically():
    config = ReplayConfig(capacity=24, num_envs=2, length=4, seed=5)
    a = Replay(config, STEP_SPEC, CONTEXT_SPEC)
    _fill(a, 17)
    a.sample(3)
    a.write_context(
        a.sample(2).index,
        {
            "deter": np.ones((2, 4, 3), np.float32),
            "stoch": {"onehot": np.ones((2, 4, 2, 2), np.float32)},
        },
    )
    b = Replay(config, STEP_SPEC, CONTEXT_SPEC)
    b.load_state_dict(a.state_dict())
    for key, value in a.state_dict()["data"].items():
        np.testing.assert_array_equal(value, b.state_dict()["data"][key])
    assert a.state_dict()["meta"] == b.state_dict()["meta"]
    for _ in range(3):
        sa, sb = a.sample(5), b.sample(5)
        np.testing.assert_array_equal(sa.data["step_id"], sb.data["step_id"])
        np.testing.assert_array_equal(sa.context["deter"], sb.context["deter"])
        _fill(a, 5, start=17)
        _fill(b, 5, start=17)


def test_load_refuses_a_different_layout():
    a = Replay(ReplayConfig(capacity=24, num_envs=2, length=4), STEP_SPEC)
    b = Replay(ReplayConfig(capacity=24, num_envs=3, length=4), STEP_SPEC)
    with pytest.raises(ValueError, match="num_envs"):
        b.load_state_dict(a.state_dict())


def test_bad_config_and_bad_steps_give_clear_errors():
    with pytest.raises(ValueError, match="fewer than one sequence"):
        ReplayConfig(capacity=10, num_envs=4, length=5)
    replay = Replay(ReplayConfig(capacity=20, num_envs=2, length=5), STEP_SPEC)
    step = _step(2, 0)
    del step["action"]
    with pytest.raises(KeyError, match="action"):
        replay.add(step)
    step = _step(2, 0)
    step["image"] = step["image"][:, :2]
    with pytest.raises(ValueError, match="image"):
        replay.add(step)


def test_memory_estimate_matches_allocated_arrays():
    config = ReplayConfig(capacity=50, num_envs=2, length=5)
    replay = Replay(config, STEP_SPEC, CONTEXT_SPEC)
    allocated = sum(v.nbytes for v in replay._data.values())
    allocated += sum(v.nbytes for v in replay._context.values())
    assert memory_bytes(STEP_SPEC, CONTEXT_SPEC, 50) == allocated


def test_add_stores_optional_context_and_zeroes_it_otherwise():
    replay = Replay(
        ReplayConfig(capacity=20, num_envs=2, length=4, online=False), STEP_SPEC, CONTEXT_SPEC
    )
    for t in range(10):
        step = _step(2, t)
        if t % 2:
            step["deter"] = np.full((2, 3), t, np.float32)
            step["stoch"] = {"onehot": np.full((2, 2, 2), -t, np.float32)}
        replay.add(step)
    sample = replay.sample(32)
    t = sample.data["step_id"] % 100_000  # [B, L]
    np.testing.assert_array_equal(sample.context["deter"][..., 1], np.where(t % 2, t, 0))
    np.testing.assert_array_equal(
        sample.context["stoch"]["onehot"][..., 0, 1], np.where(t % 2, -t, 0)
    )


def test_integer_context_storage_rounds_one_hot_and_refuses_soft_values():
    spec = {"stoch": ((2, 3), np.uint8), "deter": ((2,), np.float16)}
    replay = Replay(ReplayConfig(capacity=8, num_envs=1, length=2, online=False), STEP_SPEC, spec)
    one_hot = np.array([[[0.0, 0.99999994, 0.0], [1.0000001, 0.0, 0.0]]], np.float32)
    replay.add({**_step(1, 0), "stoch": one_hot, "deter": np.full((1, 2), 0.1, np.float32)})
    replay.add(_step(1, 1))
    stored = replay.state_dict()["context"]
    np.testing.assert_array_equal(stored["stoch"][0, 0], [[0, 1, 0], [1, 0, 0]])
    assert stored["deter"].dtype == np.float16 and stored["deter"][0, 0, 0] == np.float16(0.1)
    with pytest.raises(ValueError, match="not integral"):
        replay.add({**_step(1, 2), "stoch": np.full((1, 2, 3), 0.5, np.float32)})


def test_sampled_episode_flags_are_annotated_as_the_official_replay():
    """is_first at every sequence's first step; is_last wherever the next step starts an episode,
    including an episode abandoned without a last step (here: reset at step 5, no is_last)."""
    spec = {**STEP_SPEC, "is_last": ((), bool)}
    replay = Replay(ReplayConfig(capacity=100, num_envs=1, length=4, online=False), spec)
    for t in range(12):
        step = _step(1, t)
        step["is_first"] = np.array([t in (0, 5)])
        step["is_last"] = np.array([t == 10])
        replay.add(step)
    for _ in range(20):
        sample = replay.sample(8)
        ids = sample.data["step_id"]
        assert sample.data["is_first"][:, 0].all()
        np.testing.assert_array_equal(sample.data["is_first"][:, 1:], np.isin(ids[:, 1:], [5]))
        expected_last = np.isin(ids, [4, 10])
        expected_last[:, -1] = ids[:, -1] == 10
        np.testing.assert_array_equal(sample.data["is_last"], expected_last)
