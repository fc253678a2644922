"""Orbax checkpoints of a whole training run: agent TrainState, loop state, replay, counters.

One checkpoint step directory holds three items (the replay's contents live beside them, in
``<logdir>/replay``, written incrementally by ``replay_store``; the meta names its chunks):
- 'state':  a pytree of arrays (the agent's TrainState: params, optimizer state, slow critic,
            return-normaliser state, update counter; plus the trainer's PRNG keys, policy carry and
            env-loop arrays). Restored against a template so the pytree classes come back.
- 'arrays': free-form nested dict of numpy arrays whose shapes vary between checkpoints (the
            reward model's state, the env-loop action log), restored without a template.
- 'meta':   JSON (counters, replay write head and numpy Generator state, env-loop bookkeeping).

Orbax (0.12.8 `CheckpointManager`) writes each step into a temporary directory and renames it
when complete, so a crash mid-save leaves the previous checkpoints intact; `LatestN` keeps the
last K. Saving is synchronous: the loop is single-threaded and a resume must see every save.
Typed PRNG keys are stored as their uint32 key data and rewrapped from the template on restore.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

ITEMS = ("state", "arrays", "meta")


def _is_prng_key(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _keys_to_data(tree: Any) -> Any:
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_prng_key(x) else x, tree)


def _data_to_keys(tree: Any, template: Any) -> Any:
    def restore_leaf(value, like):
        if _is_prng_key(like):
            return jax.random.wrap_key_data(value, impl=jax.random.key_impl(like))
        return value

    return jax.tree.map(restore_leaf, tree, template)


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the state this run builds (other flags or code version)."""


def _abstract(tree: Any) -> Any:
    return jax.tree.map(
        lambda x: (
            jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype)
            if not isinstance(x, jax.Array)
            else jax.ShapeDtypeStruct(x.shape, x.dtype)
        ),
        tree,
    )


def _split_empty(tree: Mapping[str, Any], prefix: str = "") -> tuple[dict, dict]:
    """Orbax refuses empty subtrees and zero-size arrays (an empty action log has both).

    Returns (tree without them, {'/'-joined path: [shape, dtype] or None for an empty dict}).
    """
    kept, empty = {}, {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            sub, sub_empty = _split_empty(value, path + "/")
            empty.update(sub_empty)
            if sub:
                kept[key] = sub
            elif not sub_empty:
                empty[path] = None
        elif np.size(value) == 0:
            empty[path] = [list(np.shape(value)), np.asarray(value).dtype.str]
        else:
            kept[key] = value
    return kept, empty


def _join_empty(tree: dict[str, Any], empty: Mapping[str, Any]) -> dict[str, Any]:
    for path, spec in empty.items():
        *parents, leaf = path.split("/")
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = {} if spec is None else np.zeros(spec[0], np.dtype(spec[1]))
    return tree


def _restored_arrays(restored: Any) -> dict[str, Any]:
    """The 'arrays' item of a restore as numpy, with its empty leaves put back."""
    arrays = jax.tree.map(np.asarray, dict(restored.arrays or {}))
    return _join_empty(arrays, restored.meta["empty_leaves"])


class Checkpointer:
    """Keeps the last `keep` checkpoints of a run under `directory` (created if absent)."""

    def __init__(self, directory: str | os.PathLike, keep: int):
        if keep < 1:
            raise ValueError(f"keep_checkpoints must be >= 1, got {keep}")
        self.directory = os.path.abspath(os.fspath(directory))
        options = ocp.CheckpointManagerOptions(
            preservation_policy=ocp.checkpoint_managers.LatestN(keep),
            enable_async_checkpointing=False,
            create=True,
            cleanup_tmp_directories=True,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=ITEMS)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(
        self, step: int, state: Any, arrays: Mapping[str, Any], meta: Mapping[str, Any]
    ) -> None:
        """Writes checkpoint `step` (overwrites nothing: an existing step is an error)."""
        if step in self._manager.all_steps():
            raise ValueError(f"checkpoint step {step} already exists in {self.directory}")
        state = jax.tree.map(np.asarray, _keys_to_data(state))
        arrays, empty = _split_empty(arrays)
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                arrays=ocp.args.StandardSave(arrays),
                meta=ocp.args.JsonSave({"user": dict(meta), "empty_leaves": empty}),
            ),
            force=True,
        )
        self._manager.wait_until_finished()

    def restore(self, step: int, state_template: Any) -> tuple[Any, dict[str, Any], dict]:
        """Returns (state shaped like `state_template`, arrays as numpy, meta)."""
        restored = self._restore(step, state_template, with_arrays=True)
        state = _data_to_keys(restored.state, state_template)
        return state, _restored_arrays(restored), dict(restored.meta["user"])

    def restore_state(self, step: int, state_template: Any) -> tuple[Any, dict]:
        """(state, meta) without reading the arrays item: evaluation needs the agent, not the
        replay, which is most of a checkpoint's bytes."""
        restored = self._restore(step, state_template, with_arrays=False)
        return _data_to_keys(restored.state, state_template), dict(restored.meta["user"])

    def restore_arrays(self, step: int) -> tuple[dict[str, Any], dict]:
        """(arrays, meta) without the agent state, which needs no template then: for tools that
        read a run's replay (e.g. where its episodes went)."""
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(arrays=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()),
        )
        return _restored_arrays(restored), dict(restored.meta["user"])

    def restore_meta(self, step: int) -> dict:
        """The JSON meta of checkpoint `step` alone (e.g. the replay chunks it is made of)."""
        restored = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(restored.meta["user"])

    def _restore(self, step: int, state_template: Any, with_arrays: bool) -> Any:
        items = {
            "state": ocp.args.StandardRestore(_abstract(_keys_to_data(state_template))),
            "meta": ocp.args.JsonRestore(),
        }
        if with_arrays:
            items["arrays"] = ocp.args.StandardRestore()
        try:
            return self._manager.restore(step, args=ocp.args.Composite(**items))
        except ValueError as error:
            if "structure" not in str(error).lower() and "shape" not in str(error).lower():
                raise
            raise CheckpointMismatchError(
                f"the checkpoint at step {step} in {self.directory} holds another agent or "
                "reward configuration (different networks or state, e.g. from an older version "
                "or other flags), so it cannot be loaded with these flags; use a new --logdir, "
                f"or the flags that wrote it ({str(error).splitlines()[0][:200]})"
            ) from None

    def close(self) -> None:
        self._manager.close()
