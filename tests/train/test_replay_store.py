"""Incremental replay checkpoints: a save writes only the chunks changed since the last one, a
load rebuilds the replay exactly (ring wrap-around included), pruning keeps what retained
checkpoints need, and a missing chunk is named."""

import os

import numpy as np
import pytest

from genreward_jax.replay import Replay, ReplayConfig
from genreward_jax.replay_store import ReplayStore, read_replay

SPEC = {"state": ((3,), np.float32), "reward": ((), np.float32), "is_first": ((), bool)}
CONTEXT = {"deter": ((4,), np.float16)}
CHUNK = 8


def make_replay(seed=0) -> Replay:
    config = ReplayConfig(capacity=64, num_envs=2, length=5, seed=seed, chunk_steps=CHUNK)
    return Replay(config, SPEC, CONTEXT)


def add_steps(replay: Replay, steps: int, rng: np.random.Generator) -> None:
    for _ in range(steps):
        replay.add(
            {
                "state": rng.normal(size=(2, 3)).astype(np.float32),
                "reward": rng.normal(size=2).astype(np.float32),
                "is_first": rng.random(2) < 0.1,
                "deter": rng.normal(size=(2, 4)).astype(np.float32),
            }
        )


def written(store: ReplayStore, version: int) -> list[str]:
    return sorted(n for n in os.listdir(store.directory) if n.endswith(f"_v{version}.npz"))


def assert_same_replay(a: Replay, b: Replay) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["meta"] == sb["meta"]
    for part in ("data", "context"):
        for key in sa[part]:
            np.testing.assert_array_equal(sa[part][key], sb[part][key])


def test_second_checkpoint_writes_only_the_new_part(tmp_path):
    rng = np.random.default_rng(0)
    replay, store = make_replay(), ReplayStore(tmp_path)
    add_steps(replay, 20, rng)  # slots 0..19: chunks 0, 1, 2
    first = store.save(replay, 20, None)
    assert written(store, 20) == [
        f"{p}_{c:06d}_v20.npz" for p in ("context", "data") for c in (0, 1, 2)
    ]
    add_steps(replay, 5, rng)  # slots 20..24: chunks 2, 3
    second = store.save(replay, 25, first)
    assert written(store, 25) == [
        f"{p}_{c:06d}_v25.npz" for p in ("context", "data") for c in (2, 3)
    ]
    assert second["data"] == {"0": 20, "1": 20, "2": 25, "3": 25}
    sample = replay.sample(2)  # the trainer writes posteriors back: only their context changes
    replay.write_context(sample.index, {"deter": np.ones((2, 5, 4), np.float32)})
    touched = sorted({(int(s) + i) % 64 // CHUNK for s in sample.index.start for i in range(5)})
    third = store.save(replay, 26, second)
    assert written(store, 26) == [f"context_{c:06d}_v26.npz" for c in touched]
    assert third["data"] == second["data"]

    restored = make_replay(seed=9)
    restored.load_meta(replay.meta())  # the checkpoint's JSON meta
    store.load(restored, third)
    assert_same_replay(replay, restored)
    assert restored.dirty_chunks("data") == restored.dirty_chunks("context") == []
    for _ in range(3):  # and it samples on exactly as the original
        np.testing.assert_array_equal(
            replay.sample(3).data["state"], restored.sample(3).data["state"]
        )


def test_ring_wrap_around_and_read_replay(tmp_path):
    rng = np.random.default_rng(1)
    replay, store = make_replay(), ReplayStore(tmp_path)
    add_steps(replay, 40, rng)
    manifest = store.save(replay, 40, None)
    add_steps(replay, 40, rng)  # 80 steps in a 32-slot ring per env: every chunk rewritten
    manifest = store.save(replay, 80, manifest)
    assert set(manifest["data"].values()) == {80}
    restored = make_replay()
    restored.load_meta(replay.meta())
    store.load(restored, manifest)
    assert_same_replay(replay, restored)
    read = read_replay(tmp_path, manifest, used=32)
    np.testing.assert_array_equal(read["data"]["state"], replay.state_dict()["data"]["state"])


def test_prune_keeps_retained_checkpoints_and_names_a_missing_chunk(tmp_path):
    rng = np.random.default_rng(2)
    replay, store = make_replay(), ReplayStore(tmp_path)
    add_steps(replay, 12, rng)
    m1 = store.save(replay, 12, None)
    add_steps(replay, 12, rng)
    m2 = store.save(replay, 24, m1)
    (tmp_path / "data_000009_v7.npz").write_bytes(b"orphan of a crashed save")
    (tmp_path / ".tmp-abc.npz").write_bytes(b"a chunk killed mid-write")
    removed = store.prune([m2])  # checkpoint 12 no longer retained
    assert "data_000009_v7.npz" in removed and "data_000001_v12.npz" in removed
    assert ".tmp-abc.npz" in removed
    assert "data_000000_v12.npz" not in removed  # checkpoint 24 still uses chunk 0 of step 12
    restored = make_replay()
    restored.load_meta(replay.meta())
    store.load(restored, m2)
    assert_same_replay(replay, restored)
    os.remove(tmp_path / "data_000000_v12.npz")
    with pytest.raises(FileNotFoundError, match="data_000000_v12.npz"):
        store.load(make_replay(), m2)


def test_a_checkpoint_from_before_incremental_replay_still_reads(tmp_path):
    """Older runs kept the whole replay in the checkpoint's arrays (and no chunk manifest)."""
    from genreward_jax.checkpoint import Checkpointer
    from genreward_jax.replay_store import read_run_replay

    replay = make_replay()
    add_steps(replay, 12, np.random.default_rng(3))
    state = replay.state_dict()
    checkpointer = Checkpointer(tmp_path / "checkpoints", keep=1)
    checkpointer.save(12, {"w": np.zeros(2)}, {"replay": state}, {"replay": state.pop("meta")})
    checkpointer.close()
    read = read_run_replay(tmp_path)
    np.testing.assert_array_equal(read["data"]["state"], replay.state_dict()["data"]["state"])
