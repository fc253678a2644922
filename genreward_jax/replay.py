"""Sequence replay for DreamerV3: one numpy ring buffer per env stream.

Why this shape:
- Every env step is stored exactly once (images as uint8); a sampled sequence is gathered from
  the ring with fancy indexing, so there are no per-sequence copies in memory.
- All envs of an `EnvBatch` advance in lockstep, so one absolute step counter `count` describes
  every stream: absolute step t of env e lives in slot `t % per_env_capacity` of row e.
- A sequence is `length` = T + 1 consecutive steps of one env (the first one is the replay-context
  step). Sequences MAY cross episode boundaries: `is_first` resets the RSSM state and the previous
  action inside the sequence, exactly as in the official DreamerV3 replay. Sequences may NOT cross
  the write head: only the `min(count, capacity)` most recent steps of a stream are valid, so the
  valid starts of env e are the absolute steps [count - avail, count - length], all equally likely.
- "Online" queue: whenever a stream completes a new non-overlapping window of `length` steps
  (count a multiple of `length`), that freshest sequence of every env is queued, and `sample`
  takes queued sequences first (FIFO) before filling the batch uniformly. With train ratio >= 1
  every stored step is thus trained on at least once while it is fresh. Queued sequences that were
  overwritten before being sampled are dropped.
- Replay context: the trainer writes the posterior state computed for each step back with
  `write_context` (and the policy's posterior can be stored with `add`); `sample` returns the
  stored context of each sequence, whose first step the world model uses as its initial state.
  Never-written context is zeros (the RSSM's initial state). A write is skipped for steps
  that were overwritten between sampling and write-back.
- Context storage dtypes come from the context spec: the trainer stores the deterministic state
  as float16 and the one-hot stochastic state as uint8 by default (`compact_context`), which
  cuts the 12m preset's context from 10 KiB to 4.5 KiB per step (see `memory_bytes`).
- All randomness comes from one explicit `numpy.random.Generator` whose state is checkpointed.
- Checkpoints are incremental (`replay_store.ReplayStore`): the ring is cut into chunks of
  `chunk_steps` slots of every stream, and the replay remembers which chunks' step data and
  which chunks' context changed since they were last saved (`dirty_chunks`), so a checkpoint
  writes those, not the whole replay.

Layout of a step (the agreed DreamerV3 convention): obs_t keys, action_t taken FROM obs_t (zeros at
the last step of an episode), reward_t received on arriving at obs_t, is_first_t, is_last_t,
is_terminal_t.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

Spec = Mapping[str, tuple[tuple[int, ...], Any]]


@dataclasses.dataclass(frozen=True)
class ReplayConfig:
    """capacity: total steps over all env streams; length: T + 1 steps per sampled sequence."""

    capacity: int
    num_envs: int
    length: int
    online: bool = True
    seed: int = 0
    chunk_steps: int = 1024  # slots per stream in one checkpoint chunk

    def __post_init__(self) -> None:
        if self.num_envs < 1:
            raise ValueError(f"replay num_envs must be >= 1, got {self.num_envs}")
        if self.length < 2:
            raise ValueError(f"replay sequence length must be >= 2 (T + 1), got {self.length}")
        if self.chunk_steps < 1:
            raise ValueError(f"replay chunk_steps must be >= 1, got {self.chunk_steps}")
        if self.capacity // self.num_envs < self.length:
            raise ValueError(
                f"replay capacity {self.capacity} gives {self.capacity // self.num_envs} steps per "
                f"env stream for {self.num_envs} envs, fewer than one sequence of {self.length} "
                "steps; raise --replay_capacity or lower --batch_length/--num_envs"
            )

    @property
    def per_env_capacity(self) -> int:
        return self.capacity // self.num_envs


class SampleIndex(NamedTuple):
    """Where a sampled batch came from: env row [B] and absolute first step [B]."""

    env: np.ndarray
    start: np.ndarray


class Sample(NamedTuple):
    """data: step keys as [B, L, ...]; context: stored context leaves as [B, L, ...].

    Index 0 of the context is the first step's stored posterior, the RSSM's initial state; the
    other steps are returned too because the agent's batch layout carries them (it reads only 0).
    """

    data: dict[str, np.ndarray]
    context: dict[str, Any]
    index: SampleIndex


def flatten_tree(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> flat dict with '/'-joined keys (context pytrees may be nested)."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_tree(value, name + "/"))
        else:
            flat[name] = value
    return flat


def unflatten_tree(flat: Mapping[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, value in flat.items():
        *parents, leaf = name.split("/")
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return tree


def step_bytes(spec: Spec) -> int:
    """Bytes one stored step occupies for a {key: (shape, dtype)} spec."""
    return int(
        sum(
            np.prod(shape, dtype=np.int64) * np.dtype(dtype).itemsize
            for shape, dtype in spec.values()
        )
    )


def memory_bytes(step_spec: Spec, context_spec: Spec, capacity: int) -> int:
    """RAM the replay arrays take at full capacity (the ring is preallocated, so also at start)."""
    return capacity * (step_bytes(step_spec) + step_bytes(flatten_spec(context_spec)))


def flatten_spec(spec: Mapping[str, Any]) -> dict[str, tuple[tuple[int, ...], Any]]:
    flat = {}
    for key, value in spec.items():
        if isinstance(value, Mapping):
            flat.update({f"{key}/{k}": v for k, v in flatten_spec(value).items()})
        else:
            shape, dtype = value
            flat[key] = (tuple(shape), np.dtype(dtype))
    return flat


def annotate(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Episode flags of sampled sequences [B, L] as the official replay sets them: ``is_first``
    at each sequence's first step, and ``is_last`` wherever the next step starts an episode, so
    an episode abandoned without a last step (an env that resets early) still ends where the
    next begins and no return is bootstrapped across the boundary."""
    if "is_first" not in data:
        return data
    data = dict(data)
    first = data["is_first"].copy()
    first[:, 0] = True
    data["is_first"] = first
    if "is_last" in data:
        next_first = np.zeros_like(first)
        next_first[:, :-1] = first[:, 1:]
        data["is_last"] = data["is_last"] | next_first
    return data


class Replay:
    """Lockstep ring buffer of `num_envs` streams; see the module docstring for the semantics."""

    def __init__(self, config: ReplayConfig, step_spec: Spec, context_spec: Spec | None = None):
        self.config = config
        self._cap = config.per_env_capacity
        self._step_spec = flatten_spec(step_spec)
        self._context_spec = flatten_spec(context_spec or {})
        n = config.num_envs
        self._data = {
            k: np.zeros((n, self._cap, *shape), dtype)
            for k, (shape, dtype) in self._step_spec.items()
        }
        self._context = {
            k: np.zeros((n, self._cap, *shape), dtype)
            for k, (shape, dtype) in self._context_spec.items()
        }
        self._count = 0
        self._online: collections.deque[tuple[int, int]] = collections.deque()
        self._rng = np.random.default_rng(config.seed)
        # Chunks changed since they were last saved, per part ('data', 'context').
        self._dirty: dict[str, set[int]] = {"data": set(), "context": set()}

    # ---------------------------------------------------------------- writing
    def add(self, step: Mapping[str, Any]) -> None:
        """Appends one step of every env; `step[key]` is [num_envs, ...] for every spec key.

        Context keys (e.g. the policy's posterior 'deter'/'stoch' of this step) are optional:
        they are stored when present and zeroed otherwise.
        """
        missing = set(self._step_spec) - set(step)
        if missing:
            raise KeyError(f"replay step is missing keys {sorted(missing)}")
        slot = self._count % self._cap
        for key, buffer in self._data.items():
            value = np.asarray(step[key])
            if value.shape != buffer.shape[:1] + buffer.shape[2:]:
                raise ValueError(
                    f"replay key {key!r}: expected shape "
                    f"{buffer.shape[:1] + buffer.shape[2:]}, got {value.shape}"
                )
            buffer[:, slot] = value
        flat_step = flatten_tree(step)
        for key, buffer in self._context.items():
            value = flat_step.get(key, 0)
            buffer[:, slot] = _as_stored(key, value, buffer.dtype)
        chunk = slot // self.config.chunk_steps
        self._dirty["data"].add(chunk)
        self._dirty["context"].add(chunk)
        self._count += 1
        length = self.config.length
        if self.config.online and self._count % length == 0:
            self._online.extend((env, self._count - length) for env in range(self.config.num_envs))

    def write_context(self, index: SampleIndex, context: Mapping[str, Any]) -> None:
        """Stores per-step posterior states of sampled sequences.

        context leaves are [B, L, ...] (every step) or [B, L - 1, ...] (steps 1..L-1, i.e. the
        training steps after the context step). Steps overwritten since sampling are skipped.
        """
        flat = flatten_tree(context)
        unknown = set(flat) - set(self._context)
        if unknown:
            raise KeyError(
                f"context keys {sorted(unknown)} not in the replay context spec "
                f"{sorted(self._context)}"
            )
        length = self.config.length
        for key, value in flat.items():
            value = np.asarray(value)
            steps = value.shape[1]
            if steps not in (length, length - 1):
                raise ValueError(
                    f"context {key!r} has {steps} steps; expected {length} or {length - 1}"
                )
            offset = length - steps
            absolute = index.start[:, None] + offset + np.arange(steps)[None]  # [B, steps]
            alive = absolute >= self._count - min(self._count, self._cap)
            env = np.broadcast_to(index.env[:, None], absolute.shape)
            slots = absolute[alive] % self._cap
            self._context[key][env[alive], slots] = _as_stored(
                key, value[alive], self._context[key].dtype
            )
            self._dirty["context"].update(np.unique(slots // self.config.chunk_steps).tolist())

    # ---------------------------------------------------------------- reading
    def __len__(self) -> int:
        """Steps stored over all streams."""
        return min(self._count, self._cap) * self.config.num_envs

    @property
    def count(self) -> int:
        """Steps written per stream since the start (absolute write head)."""
        return self._count

    @property
    def num_sequences(self) -> int:
        """Number of distinct valid sequences (uniform sampling support)."""
        per_env = min(self._count, self._cap) - self.config.length + 1
        return max(0, per_env) * self.config.num_envs

    @property
    def online_size(self) -> int:
        return len(self._online)

    def valid_starts(self) -> tuple[int, int]:
        """[first, last] absolute start step of the valid sequences of every stream."""
        return self._count - min(self._count, self._cap), self._count - self.config.length

    def sample(self, batch_size: int) -> Sample:
        """Online sequences first (FIFO), then uniform over all valid sequences."""
        if self.num_sequences == 0:
            raise ValueError(
                f"replay holds {len(self)} steps, not yet one sequence of "
                f"{self.config.length} steps per env; sample later"
            )
        first, last = self.valid_starts()
        envs, starts = [], []
        while self._online and len(envs) < batch_size:
            env, start = self._online.popleft()
            if start >= first:
                envs.append(env)
                starts.append(start)
        rest = batch_size - len(envs)
        per_env = last - first + 1
        flat = self._rng.integers(0, per_env * self.config.num_envs, size=rest)
        env = np.concatenate([np.asarray(envs, np.int64), flat // per_env])
        start = np.concatenate([np.asarray(starts, np.int64), first + flat % per_env])
        slots = (start[:, None] + np.arange(self.config.length)[None]) % self._cap  # [B, L]
        rows = env[:, None]
        data = annotate({key: buffer[rows, slots] for key, buffer in self._data.items()})
        context = unflatten_tree(
            {key: buffer[rows, slots] for key, buffer in self._context.items()}
        )
        return Sample(data, context, SampleIndex(env, start))

    # ---------------------------------------------------------------- checkpoints
    @property
    def num_chunks(self) -> int:
        return -(-self._cap // self.config.chunk_steps)

    def dirty_chunks(self, part: str) -> list[int]:
        """Chunks of `part` ('data' or 'context') changed since `mark_saved`, in order."""
        return sorted(self._dirty[part])

    def chunk(self, part: str, index: int) -> dict[str, np.ndarray]:
        """{key: [num_envs, chunk slots, ...]} of one chunk of `part` (a view)."""
        size = self.config.chunk_steps
        buffers = self._data if part == "data" else self._context
        return {k: v[:, index * size : (index + 1) * size] for k, v in buffers.items()}

    def load_chunk(self, part: str, index: int, arrays: Mapping[str, np.ndarray]) -> None:
        target = self.chunk(part, index)
        if set(target) != set(arrays):
            raise ValueError(
                f"replay chunk {part} {index} has keys {sorted(arrays)}, this run's replay "
                f"{sorted(target)}"
            )
        for key, view in target.items():
            view[...] = np.asarray(arrays[key]).reshape(view.shape)

    def mark_dirty(self) -> None:
        """Every chunk written so far is to be saved (a first save, or another chunking)."""
        written = -(-min(self._count, self._cap) // self.config.chunk_steps)
        self._dirty = {part: set(range(written)) for part in ("data", "context")}

    def mark_saved(self) -> None:
        """Every chunk is as last saved (after a save, or a load)."""
        self._dirty = {"data": set(), "context": set()}

    def meta(self) -> dict[str, Any]:
        """JSON-able write head, online queue, shape and Generator state."""
        return {
            "online": [[int(e), int(s)] for e, s in self._online],
            "count": int(self._count),
            "per_env_capacity": int(self._cap),
            "num_envs": int(self.config.num_envs),
            "length": int(self.config.length),
            "rng": _rng_state_to_json(self._rng),
        }

    def load_meta(self, meta: Mapping[str, Any]) -> None:
        ours = {
            "per_env_capacity": self._cap,
            "num_envs": self.config.num_envs,
            "length": self.config.length,
        }
        theirs = {k: int(meta[k]) for k in ours}
        if theirs != ours:
            raise ValueError(
                f"replay checkpoint was written with {theirs}, this run uses {ours}; "
                "resume with the same --replay_capacity/--num_envs/--batch_length"
            )
        self._count = int(meta["count"])
        self._online = collections.deque((int(e), int(s)) for e, s in meta["online"])
        self._rng.bit_generator.state = _rng_state_from_json(meta["rng"])

    def state_dict(self) -> dict[str, Any]:
        """Arrays {'data', 'context'} (only the written slots) plus JSON-able 'meta': the whole
        replay at once (the trainer's checkpoints go through ``replay_store`` instead)."""
        used = min(self._count, self._cap)
        return {
            "data": {k: v[:, :used].copy() for k, v in self._data.items()},
            "context": {k: v[:, :used].copy() for k, v in self._context.items()},
            "meta": self.meta(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.load_meta(state["meta"])
        for target, source, name in (
            (self._data, state["data"], "data"),
            (self._context, state["context"], "context"),
        ):
            if set(target) != set(source):
                raise ValueError(
                    f"replay checkpoint {name} keys {sorted(source)} differ from "
                    f"this run's {sorted(target)}"
                )
            for key, buffer in target.items():
                value = np.asarray(source[key])
                used = value.shape[1]
                buffer[:, :used] = value
                buffer[:, used:] = 0
        self.mark_saved()


def _as_stored(key: str, value: Any, dtype: np.dtype) -> np.ndarray:
    """Casts context to its storage dtype; integer storage (one-hot latents as uint8) must be
    exact up to float rounding (straight-through samples are one-hot within an ulp)."""
    value = np.asarray(value)
    if np.issubdtype(dtype, np.integer) and not np.issubdtype(value.dtype, np.integer):
        rounded = np.rint(value)
        if value.size and np.abs(value - rounded).max() > 1e-3:
            raise ValueError(
                f"context {key!r} is stored as {np.dtype(dtype).name} but its "
                "values are not integral; store it as a float"
            )
        value = rounded
    return value.astype(dtype, copy=False)


def _rng_state_to_json(rng: np.random.Generator) -> dict[str, Any]:
    """PCG64 state holds 128-bit ints; strings keep them exact through any JSON layer."""
    state = rng.bit_generator.state
    return {
        "bit_generator": state["bit_generator"],
        "state": {k: str(v) for k, v in state["state"].items()},
        "has_uint32": int(state["has_uint32"]),
        "uinteger": int(state["uinteger"]),
    }


def _rng_state_from_json(state: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "bit_generator": state["bit_generator"],
        "state": {k: int(v) for k, v in state["state"].items()},
        "has_uint32": int(state["has_uint32"]),
        "uinteger": int(state["uinteger"]),
    }
