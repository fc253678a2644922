"""Replay on disk beside the checkpoints, written incrementally: a checkpoint writes only the
chunks that changed since the last one.

A 1M-step image replay is ~12 GB; rewriting it whole at every checkpoint makes checkpoint time
grow with the run. The replay ring is cut into chunks (``ReplayConfig.chunk_steps`` slots of every
stream) and the replay tracks which chunks changed (``Replay.dirty_chunks``): new steps dirty the
data and context of their chunk, written-back posteriors (``write_context``) the context of
theirs. Each saved chunk of a part is one ``.npz`` file, ``<part>_<chunk>_v<version>.npz``, named
by the checkpoint step that wrote it; a checkpoint's manifest (in its JSON meta) says which
version of every chunk it is made of, so unchanged chunks are shared between checkpoints.

Why versioned files rather than overwriting: the older checkpoints that ``keep_checkpoints``
retains must stay loadable, and a crash between writing chunks and committing the checkpoint
must leave the previous one intact. Chunks are written (atomically) before the checkpoint that
references them; ``prune`` then deletes every chunk no retained checkpoint references (orphans of
a crashed save included).

The context of sampled sequences is rewritten as the agent trains, scattered over the whole
replay, so between two checkpoints far apart most context chunks are dirty: the step data (the
images, most of the bytes) is what this saves writing again.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from genreward_jax.atomic import atomic_path
from genreward_jax.replay import Replay

PARTS = ("data", "context")
REPLAY_DIR = "replay"  # under the run's logdir
_NAME = re.compile(r"^(data|context)_(\d+)_v(\d+)\.npz$")

Manifest = dict[str, Any]  # {"chunk_steps": C, "data": {"<chunk>": version}, "context": {...}}


class ReplayStore:
    """The chunk files of one run's replay, under `directory`."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = os.fspath(directory)
        os.makedirs(self.directory, exist_ok=True)

    def _path(self, part: str, chunk: int, version: int) -> str:
        return os.path.join(self.directory, f"{part}_{chunk:06d}_v{version}.npz")

    def save(self, replay: Replay, version: int, previous: Manifest | None) -> Manifest:
        """Writes the chunks changed since `previous` (all of them when None) as `version` and
        returns the manifest of the replay as it now is; the replay is then clean."""
        chunk_steps = replay.config.chunk_steps
        if previous is not None and previous["chunk_steps"] != chunk_steps:
            previous = None  # another chunking: write everything
        if previous is None:
            replay.mark_dirty()
        manifest: Manifest = {"chunk_steps": chunk_steps}
        for part in PARTS:
            versions = {} if previous is None else dict(previous[part])
            for chunk in replay.dirty_chunks(part):
                self._write(self._path(part, chunk, version), replay.chunk(part, chunk))
                versions[str(chunk)] = version
            manifest[part] = versions
        replay.mark_saved()
        return manifest

    def load(self, replay: Replay, manifest: Manifest) -> None:
        """Fills the replay's buffers from the chunks of `manifest` (chunks it does not list
        were never written and stay zero); the replay is then clean."""
        if manifest["chunk_steps"] != replay.config.chunk_steps:
            raise ValueError(
                f"replay chunks of {manifest['chunk_steps']} steps on disk, this run cuts "
                f"{replay.config.chunk_steps}"
            )
        for part in PARTS:
            for chunk, version in manifest[part].items():
                path = self._path(part, int(chunk), int(version))
                if not os.path.isfile(path):
                    raise FileNotFoundError(
                        f"replay chunk {path} is missing (the checkpoint needs it; was "
                        f"{self.directory} copied with the checkpoints?)"
                    )
                replay.load_chunk(part, int(chunk), _read(path))
        replay.mark_saved()

    def prune(self, manifests: Iterable[Manifest]) -> list[str]:
        """Deletes every chunk file no manifest in `manifests` references, and half-written
        ones; returns their names. Saves are sequential, so no write is in flight here."""
        keep = {
            os.path.basename(self._path(part, int(chunk), int(version)))
            for manifest in manifests
            for part in PARTS
            for chunk, version in manifest[part].items()
        }
        removed = []
        for name in sorted(os.listdir(self.directory)):
            partial = name.startswith(".tmp-")  # a chunk whose writer was killed mid-write
            if partial or (_NAME.match(name) and name not in keep):
                os.remove(os.path.join(self.directory, name))
                removed.append(name)
        return removed

    def _write(self, path: str, arrays: Mapping[str, np.ndarray]) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
            f.flush()
            os.fsync(f.fileno())


def read_replay(
    directory: str | os.PathLike, manifest: Manifest, used: int | None = None
) -> dict[str, dict[str, Any]]:
    """{'data': {key: [num_envs, slots, ...]}, 'context': {...}} of a saved replay, chunks
    concatenated in slot order and cut to the first `used` slots (for tools and tests that read
    a run's replay)."""
    store = ReplayStore(directory)
    out: dict[str, dict[str, Any]] = {}
    for part in PARTS:
        chunks = sorted((int(c), int(v)) for c, v in manifest[part].items())
        pieces = [_read(store._path(part, c, v)) for c, v in chunks]
        keys = pieces[0].keys() if pieces else []
        out[part] = {k: np.concatenate([p[k] for p in pieces], axis=1)[:, :used] for k in keys}
    return out


def read_run_replay(logdir: str | os.PathLike, step: int | None = None) -> dict[str, dict]:
    """The replay of a run's checkpoint `step` (default: the latest), as ``read_replay``."""
    from genreward_jax.checkpoint import Checkpointer

    checkpointer = Checkpointer(os.path.join(os.fspath(logdir), "checkpoints"), keep=10**6)
    try:
        step = checkpointer.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{logdir} has no checkpoint")
        meta = checkpointer.restore_meta(step)
        if "replay_chunks" not in meta:  # written before incremental replay: in its arrays
            arrays, _ = checkpointer.restore_arrays(step)
            return {part: arrays["replay"][part] for part in PARTS}
    finally:
        checkpointer.close()
    used = min(meta["replay"]["count"], meta["replay"]["per_env_capacity"])
    return read_replay(os.path.join(os.fspath(logdir), REPLAY_DIR), meta["replay_chunks"], used)


def _read(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}
