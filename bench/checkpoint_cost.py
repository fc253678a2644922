"""What a replay checkpoint costs as the replay grows: the whole replay rewritten (as every
checkpoint did before ``replay_store``) against an incremental save of what changed since the
previous checkpoint.

    .venv/bin/python -m bench.checkpoint_cost                       # ~3 minutes, ~3 GB of disk
    .venv/bin/python -m bench.checkpoint_cost --sizes=20000,100000 --between=20000

The replay is the paper's image agent's (64×64×3 uint8 frames, the 39-d state, reward and flags,
the 12m preset's compact context: deterministic state float16 [2048], one-hot stochastic state
uint8 [32, 16]) filled to each size with random values. Between two checkpoints the loop adds
--between steps and the learner writes back context for the sequences it trains on: train ratio
--ratio over batches of 16 × 65 steps, i.e. between·ratio/1024 updates of 16 sequences, each
written back at random valid starts. Timed: the first (whole) save and the next incremental one,
each with its bytes; the 1M-step figures are extrapolated from the measured write throughput.
Prints a table and writes JSON (default bench/results/checkpoint_cost.json).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np

from genreward_jax.atomic import atomic_write_json
from genreward_jax.replay import Replay, ReplayConfig, SampleIndex
from genreward_jax.replay_store import ReplayStore

SPEC = {
    "image": ((64, 64, 3), np.uint8),
    "state": ((39,), np.float32),
    "action": ((4,), np.float32),
    "reward": ((), np.float32),
    "is_first": ((), bool),
    "is_last": ((), bool),
    "is_terminal": ((), bool),
}
CONTEXT = {"deter": ((2048,), np.float16), "stoch": ((32, 16), np.uint8)}
BATCH, LENGTH = 16, 65


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="20000,100000", help="replay sizes (env steps)")
    parser.add_argument("--between", type=int, default=20_000, help="env steps between saves")
    parser.add_argument("--ratio", type=float, default=512.0, help="train ratio (paper: 512)")
    parser.add_argument("--chunk_steps", type=int, default=1024)
    parser.add_argument("--dir", default=None, help="scratch folder (default: a temp folder)")
    parser.add_argument("--out", default="bench/results/checkpoint_cost.json")
    return parser.parse_args(argv)


def fill(replay: Replay, steps: int, rng: np.random.Generator) -> None:
    """Adds `steps` steps of random values, 1000 at a time (one random block reused)."""
    block = {
        "image": rng.integers(0, 256, (1000, 1, 64, 64, 3), dtype=np.uint8),
        "state": rng.normal(size=(1000, 1, 39)).astype(np.float32),
    }
    for t in range(steps):
        i = t % 1000
        replay.add(
            {
                "image": block["image"][i],
                "state": block["state"][i],
                "action": np.zeros((1, 4), np.float32),
                "reward": np.zeros(1, np.float32),
                "is_first": np.array([t % 500 == 0]),
                "is_last": np.array([t % 500 == 499]),
                "is_terminal": np.zeros(1, bool),
            }
        )


def write_back(replay: Replay, updates: int, rng: np.random.Generator) -> None:
    """The learner's context writes of `updates` updates (16 sequences each, at uniformly drawn
    valid starts; the sequences' data is not gathered, only their context written)."""
    context = {
        "deter": rng.normal(size=(BATCH, LENGTH, 2048)).astype(np.float16),
        "stoch": np.eye(16, dtype=np.uint8)[rng.integers(0, 16, (BATCH, LENGTH, 32))],
    }
    first, last = replay.valid_starts()
    for _ in range(updates):
        starts = rng.integers(first, last + 1, BATCH)
        replay.write_context(SampleIndex(np.zeros(BATCH, np.int64), starts), context)


def folder_bytes(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder))


def measure(size: int, args, scratch: str) -> dict:
    rng = np.random.default_rng(0)
    config = ReplayConfig(
        capacity=size + args.between,
        num_envs=1,
        length=LENGTH,
        chunk_steps=args.chunk_steps,
    )
    replay = Replay(config, SPEC, CONTEXT)
    fill(replay, size, rng)
    folder = os.path.join(scratch, f"replay_{size}")
    store = ReplayStore(folder)
    start = time.perf_counter()
    manifest = store.save(replay, 1, None)
    whole_s = time.perf_counter() - start
    whole_bytes = folder_bytes(folder)
    fill(replay, args.between, rng)
    updates = int(args.between * args.ratio / (BATCH * (LENGTH - 1)))
    write_back(replay, updates, rng)
    dirty = {p: len(replay.dirty_chunks(p)) for p in ("data", "context")}
    start = time.perf_counter()
    store.save(replay, 2, manifest)
    incremental_s = time.perf_counter() - start
    incremental_bytes = folder_bytes(folder) - whole_bytes
    shutil.rmtree(folder)
    return {
        "replay_steps": size,
        "whole_save_s": whole_s,
        "whole_bytes": whole_bytes,
        "incremental_save_s": incremental_s,
        "incremental_bytes": incremental_bytes,
        "updates_between": updates,
        "dirty_chunks": dirty,
        "chunks": replay.num_chunks,
        "write_mb_per_s": whole_bytes / whole_s / 1e6,
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    scratch = args.dir or tempfile.mkdtemp(prefix="checkpoint_cost-")
    rows = [measure(int(s), args, scratch) for s in args.sizes.split(",") if s]
    throughput = np.median([r["write_mb_per_s"] for r in rows]) * 1e6
    per_step_data = rows[-1]["whole_bytes"] / rows[-1]["replay_steps"]
    context_share = (2048 * 2 + 32 * 16) / per_step_data
    estimate = {
        "replay_steps": 1_000_000,
        "whole_save_s": 1_000_000 * per_step_data / throughput,
        "incremental_save_s_no_context_writes": args.between * per_step_data / throughput,
        "incremental_save_s_all_context_dirty": (
            args.between * per_step_data + 1_000_000 * per_step_data * context_share
        )
        / throughput,
    }
    lines = [
        "| replay steps | whole save | bytes | incremental save | bytes | dirty chunks (data / "
        "context of all) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['replay_steps']:,} | {r['whole_save_s']:.1f} s | "
            f"{r['whole_bytes'] / 1e9:.2f} GB | {r['incremental_save_s']:.1f} s | "
            f"{r['incremental_bytes'] / 1e9:.2f} GB | "
            f"{r['dirty_chunks']['data']} / {r['dirty_chunks']['context']} of {r['chunks']} |"
        )
    lines.append(
        f"| 1,000,000 (estimated at {throughput / 1e6:.0f} MB/s) | "
        f"{estimate['whole_save_s']:.0f} s | {1e6 * per_step_data / 1e9:.1f} GB | "
        f"{estimate['incremental_save_s_no_context_writes']:.0f}–"
        f"{estimate['incremental_save_s_all_context_dirty']:.0f} s | | |"
    )
    table = "\n".join(lines)
    print(table)
    result = {"rows": rows, "estimate_1m": estimate, "args": vars(args)}
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")
    if not args.dir:
        shutil.rmtree(scratch, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
