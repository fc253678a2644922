"""Orbax checkpoints: bitwise round trip of the agent TrainState, PRNG keys and replay; keep K."""

import os

import jax
import numpy as np
import pytest

from genreward_jax.checkpoint import Checkpointer
from genreward_jax.replay import Replay, ReplayConfig

OBS_SPEC = {"state": ((39,), np.float32)}


def _assert_same_tree(a, b):
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b, strict=True):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _filled_replay(seed: int) -> Replay:
    spec = {
        "state": ((39,), np.float32),
        "action": ((4,), np.float32),
        "reward": ((), np.float32),
        "is_first": ((), bool),
    }
    replay = Replay(
        ReplayConfig(capacity=60, num_envs=2, length=5, seed=seed),
        spec,
        {"deter": ((8,), np.float32), "stoch": ((4, 4), np.float32)},
    )
    rng = np.random.default_rng(seed)
    for t in range(37):
        replay.add(
            {
                "state": rng.normal(size=(2, 39)).astype(np.float32),
                "action": rng.uniform(-1, 1, (2, 4)).astype(np.float32),
                "reward": rng.normal(size=2).astype(np.float32),
                "is_first": np.full(2, t % 9 == 0),
                "deter": rng.normal(size=(2, 8)).astype(np.float32),
            }
        )
    replay.sample(3)
    return replay


def test_round_trip_is_bitwise_for_train_state_keys_and_replay(tmp_path, tiny_agent_factory):
    agent = tiny_agent_factory(OBS_SPEC, 4)
    train_state = agent.init(jax.random.key(7))
    state = {
        "agent": train_state,
        "carry": agent.initial_carry(2),
        "keys": {"policy": jax.random.key(1), "train": jax.random.split(jax.random.key(2))},
    }
    replay = _filled_replay(seed=4)
    replay_state = replay.state_dict()
    meta = {"env_steps": 74, "replay": replay_state.pop("meta")}
    arrays = {"replay": replay_state, "empty_log": np.zeros((2, 0, 4), np.float32)}

    checkpointer = Checkpointer(tmp_path / "ckpt", keep=2)
    checkpointer.save(74, state, arrays, meta)
    fresh_template = {
        "agent": agent.init(jax.random.key(8)),
        "carry": agent.initial_carry(2),
        "keys": {"policy": jax.random.key(0), "train": jax.random.split(jax.random.key(0))},
    }
    restored, restored_arrays, restored_meta = Checkpointer(tmp_path / "ckpt", keep=2).restore(
        74, fresh_template
    )

    _assert_same_tree(state, restored)
    assert jax.random.key_impl(restored["keys"]["policy"]) == jax.random.key_impl(
        state["keys"]["policy"]
    )
    _assert_same_tree(arrays, restored_arrays)
    assert restored_meta == meta

    # The restored replay continues exactly like the original one.
    clone = _filled_replay(seed=99)
    clone.load_state_dict({**restored_arrays["replay"], "meta": restored_meta["replay"]})
    for _ in range(3):
        want, got = replay.sample(4), clone.sample(4)
        _assert_same_tree(want.data, got.data)
        _assert_same_tree(want.context, got.context)


def test_keeps_last_k_and_refuses_to_overwrite(tmp_path):
    checkpointer = Checkpointer(tmp_path, keep=2)
    state = {"w": np.arange(3.0)}
    for step in (10, 20, 30):
        checkpointer.save(step, state, {"a": np.ones(2)}, {"step": step})
    assert checkpointer.all_steps() == [20, 30]
    assert sorted(os.listdir(tmp_path)) == ["20", "30"]  # no temporary directories left
    with pytest.raises(ValueError, match="already exists"):
        checkpointer.save(30, state, {"a": np.ones(2)}, {"step": 30})
    with pytest.raises(ValueError, match="keep_checkpoints"):
        Checkpointer(tmp_path / "other", keep=0)


def test_a_checkpoint_of_another_structure_is_refused_in_one_line(tmp_path):
    from genreward_jax.checkpoint import CheckpointMismatchError

    checkpointer = Checkpointer(str(tmp_path / "ckpt"), keep=1)
    checkpointer.save(5, {"agent": {"w": np.ones(3, np.float32)}}, {"x": np.zeros(2)}, {})
    with pytest.raises(CheckpointMismatchError, match="new --logdir"):
        checkpointer.restore(
            5, {"agent": {"w": np.ones(3, np.float32), "norm": np.zeros(2, np.float32)}}
        )
    checkpointer.close()
