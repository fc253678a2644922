"""Benchmark of the DreamerV3 train step: compile time, updates/s and peak memory.

Each configuration runs in its own subprocess so compile caches and peak RSS do not leak
between rows; the parent prints one table and writes JSON.

    python -m bench.train_step --presets=1m,12m --obs=vector --batch=16 --length=64

Compile time is the first call's trace + lower + XLA compile of the jitted train step (wall
clock and process CPU time; on a shared machine the CPU time is the steadier number). Steady
state is the median over --steps timed updates after one warm-up update.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time

from absl import app, flags

from bench.synthetic_batch import ACT_DIM, obs_spec, synthetic_batch
from genreward_jax.atomic import atomic_write_json

_PRESETS = flags.DEFINE_list("presets", ["1m"], "Size presets to run (1m ... 400m, tiny).")
_OBS = flags.DEFINE_list(
    "obs", ["vector"], "Observation kinds: 'vector' (39-d) and/or 'image' (64x64x3 uint8)."
)
_DTYPES = flags.DEFINE_list("dtypes", ["float32"], "Compute dtypes (float32, bfloat16).")
_BATCH = flags.DEFINE_integer("batch", 16, "Sequences per batch (B).")
_LENGTH = flags.DEFINE_integer(
    "length",
    64,
    "Training steps per sequence (T); the batch holds T+1 steps including the replay-context step.",
)
_STEPS = flags.DEFINE_integer("steps", 5, "Timed updates after the warm-up update.")
_OVERRIDES = flags.DEFINE_string(
    "overrides",
    "",
    'DreamerConfig fields as JSON, e.g. \'{"remat_observe": false, "scan_unroll": 4}\' (same '
    "mathematics, other compiled programs).",
)
_REUSE = flags.DEFINE_bool(
    "reuse_scratch_memory",
    True,
    "As the trainer's flag of the same name (genreward_jax/host_memory.py): each child keeps "
    "the train step's scratch memory mapped between updates.",
)
_OUT = flags.DEFINE_string("out", "bench/results/train_step.json", "JSON output path.")
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CHILD = flags.DEFINE_string("child", None, "Internal: run one configuration, print JSON.")


def run_one(
    preset_name: str,
    obs: str,
    dtype: str,
    batch: int,
    length: int,
    steps: int,
    overrides: dict | None = None,
    reuse_scratch: bool = True,
) -> dict:
    """Measure one configuration in this process (``reuse_scratch``: as the trainer's
    ``--reuse_scratch_memory``; it takes effect only before the process's first JAX
    computation)."""
    import jax
    import numpy as np

    from genreward_jax.dreamer import Agent, preset
    from genreward_jax.host_memory import reuse_scratch_memory

    reused = reuse_scratch and reuse_scratch_memory()

    config = preset(preset_name, compute_dtype=dtype, **(overrides or {}))
    agent = Agent(config, obs_spec(obs), ACT_DIM)
    t0 = time.perf_counter()
    state = agent.init(jax.random.key(0))
    jax.block_until_ready(state)
    init_s = time.perf_counter() - t0
    data = synthetic_batch(config, obs, batch, length)
    key = jax.random.key(1)

    wall0, cpu0 = time.perf_counter(), time.process_time()
    compiled = agent.train.lower(state, data, key).compile()
    compile_wall = time.perf_counter() - wall0
    compile_cpu = time.process_time() - cpu0

    state, metrics, _ = compiled(state, data, key)
    jax.block_until_ready(state)
    walls, cpus = [], []
    for i in range(steps):
        w, c = time.perf_counter(), time.process_time()
        state, metrics, _ = compiled(state, data, jax.random.key(i))
        jax.block_until_ready(state)
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    loss = float(metrics["loss/total"])
    if not np.isfinite(loss):
        raise RuntimeError(f"non-finite loss {loss}")

    device = jax.devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    median = statistics.median(walls)
    return {
        "preset": preset_name,
        "obs": obs,
        "dtype": dtype,
        "batch": batch,
        "length": length,
        "params": int(sum(x.size for x in jax.tree.leaves(state.params))),
        "device": f"{device.platform}:{device.device_kind}",
        "init_s": init_s,
        "compile_wall_s": compile_wall,
        "compile_cpu_s": compile_cpu,
        "step_wall_s_median": median,
        "step_wall_s_all": walls,
        "step_cpu_s_median": statistics.median(cpus),
        "updates_per_s": 1.0 / median,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_device_mib": (stats or {}).get("peak_bytes_in_use", 0) / 2**20 or None,
        "loadavg_1m": os.getloadavg()[0],
        "overrides": overrides or {},
        "reuse_scratch_memory": reused,
    }


def _table(rows: list[dict]) -> str:
    head = (
        f"{'preset':>6} {'obs':>6} {'dtype':>8} {'B x T':>7} {'params':>10} "
        f"{'compile s':>10} {'(cpu s)':>8} {'s/update':>9} {'(cpu s)':>8} {'upd/s':>6} "
        f"{'RSS MiB':>8} {'dev MiB':>8} {'load':>5}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['preset']:>6} {r['obs']:>6} {r['dtype']:>8}  ERROR {r['error']}")
            continue
        dev = f"{r['peak_device_mib']:.0f}" if r["peak_device_mib"] else "-"
        lines.append(
            f"{r['preset']:>6} {r['obs']:>6} {r['dtype']:>8} {r['batch']:>3}x{r['length']:<3} "
            f"{r['params']:>10,} {r['compile_wall_s']:>10.1f} {r['compile_cpu_s']:>8.1f} "
            f"{r['step_wall_s_median']:>9.3f} {r['step_cpu_s_median']:>8.3f} "
            f"{r['updates_per_s']:>6.2f} {r['peak_rss_mib']:>8.0f} {dev:>8} "
            f"{r['loadavg_1m']:>5.1f}"
        )
    return "\n".join(lines)


def main(argv):
    del argv
    if _CHILD.value:
        preset_name, obs, dtype = _CHILD.value.split(",")
        overrides = json.loads(_OVERRIDES.value) if _OVERRIDES.value else None
        row = run_one(
            preset_name,
            obs,
            dtype,
            _BATCH.value,
            _LENGTH.value,
            _STEPS.value,
            overrides,
            _REUSE.value,
        )
        print("RESULT " + json.dumps(row), flush=True)
        return
    rows = []
    for preset_name in _PRESETS.value:
        for obs in _OBS.value:
            for dtype in _DTYPES.value:
                # As a module from the project root: the child imports the project's packages.
                cmd = [
                    sys.executable,
                    "-m",
                    "bench.train_step",
                    f"--child={preset_name},{obs},{dtype}",
                    f"--batch={_BATCH.value}",
                    f"--length={_LENGTH.value}",
                    f"--steps={_STEPS.value}",
                    f"--overrides={_OVERRIDES.value}",
                    f"--reuse_scratch_memory={_REUSE.value}",
                ]
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=_ROOT)
                found = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                if proc.returncode or not found:
                    error = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                    rows.append({"preset": preset_name, "obs": obs, "dtype": dtype, "error": error})
                else:
                    rows.append(json.loads(found[-1][len("RESULT ") :]))
                print(_table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(_table(rows))
    atomic_write_json(_OUT.value, {"rows": rows, "argv": sys.argv[1:]})
    print(f"\nwrote {_OUT.value}")


if __name__ == "__main__":
    app.run(main)
