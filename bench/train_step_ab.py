"""Paired A/B benchmark of the train step of two source trees, in one process.

On a shared 2-core machine the load moves separate runs by +-20 %, which hides the 3-5 %
changes a train-step optimisation is made of. Here both trees are imported into one process
(tree A's ``genreward_jax`` is loaded, its agent built and compiled, then its modules are
dropped from ``sys.modules`` and tree B's imported the same way; the compiled steps keep their
own code alive), and their updates alternate A B A B on the same batch. Each pair's B/A ratio
sees the same machine state, and the median over pairs is the figure to quote; the ratio of
process CPU time per update is printed beside it (steadier where the wall clock is disturbed
by other load, blind to lost parallelism).

    python -m bench.train_step_ab --a=/tmp/genreward-old --b=. --preset=1m --obs=vector --steps=14

``--a`` is usually a ``git worktree`` of the commit before the change.
"""

from __future__ import annotations

import importlib
import json
import os
import statistics
import sys
import time

from absl import app, flags

_A = flags.DEFINE_string("a", None, "Root of tree A (the baseline).", required=True)
_B = flags.DEFINE_string("b", ".", "Root of tree B (the change).")
_PRESET = flags.DEFINE_string("preset", "1m", "Size preset (tiny, 1m, 12m, ...).")
_OBS = flags.DEFINE_enum("obs", "vector", ["vector", "image"], "39-d state or 64x64x3 image.")
_BATCH = flags.DEFINE_integer("batch", 16, "Sequences per batch (B).")
_LENGTH = flags.DEFINE_integer("length", 64, "Training steps per sequence (T).")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed A/B pairs after one warm-up update each.")
_OUT = flags.DEFINE_string("out", "bench/results/train_step_ab.json", "JSON output path.")
_REUSE = flags.DEFINE_bool(
    "reuse_scratch_memory",
    True,
    "As the trainer's flag (genreward_jax/host_memory.py): both trees' steps run with it.",
)

_PACKAGE = "genreward_jax"


def _import_tree(root: str):
    """Import ``root``'s genreward_jax (and the bench's batch helper) as the live package."""
    for name in [m for m in sys.modules if m == _PACKAGE or m.startswith(_PACKAGE + ".")]:
        del sys.modules[name]
    sys.path.insert(0, os.path.abspath(root))
    try:
        dreamer = importlib.import_module(f"{_PACKAGE}.dreamer")
    finally:
        sys.path.pop(0)
    return dreamer


def compile_tree(root: str, preset: str, obs: str, batch: int, length: int) -> dict:
    """Build and compile tree ``root``'s train step. Returns its compiled step, state, batch
    and compile time."""
    import jax

    from bench.synthetic_batch import ACT_DIM, obs_spec, synthetic_batch

    dreamer = _import_tree(root)
    config = dreamer.preset(preset, compute_dtype="float32")
    agent = dreamer.Agent(config, obs_spec(obs), ACT_DIM)
    state = agent.init(jax.random.key(0))
    data = synthetic_batch(config, obs, batch, length)
    start = time.perf_counter()
    step = agent.train.lower(state, data, jax.random.key(1)).compile()
    compile_s = time.perf_counter() - start
    state, _, _ = step(state, data, jax.random.key(1))
    jax.block_until_ready(state)
    return {"step": step, "state": state, "data": data, "compile_s": compile_s}


def _timed(tree: dict, key) -> tuple[float, float]:
    """One update: (wall seconds, process CPU seconds)."""
    import jax

    start, start_cpu = time.perf_counter(), time.process_time()
    tree["state"], metrics, _ = tree["step"](tree["state"], tree["data"], key)
    jax.block_until_ready(tree["state"])
    seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    if not bool(jax.numpy.isfinite(metrics["loss/total"])):
        raise RuntimeError("non-finite loss")
    return seconds, cpu


def run_pairs(a: dict, b: dict, steps: int) -> dict:
    """Alternate A and B updates ``steps`` times; the per-pair ratios B/A and their median."""
    import jax

    times_a, times_b, cpu_a, cpu_b = [], [], [], []
    for i in range(steps):
        key = jax.random.key(100 + i)
        for times, cpus, tree in ((times_a, cpu_a, a), (times_b, cpu_b, b)):
            wall, cpu = _timed(tree, key)
            times.append(wall)
            cpus.append(cpu)
    ratios = [tb / ta for ta, tb in zip(times_a, times_b, strict=True)]
    cpu_ratios = [tb / ta for ta, tb in zip(cpu_a, cpu_b, strict=True)]
    return {
        "a_s": times_a,
        "b_s": times_b,
        "a_cpu_s": cpu_a,
        "b_cpu_s": cpu_b,
        "ratios": ratios,
        "ratio_median": statistics.median(ratios),
        "cpu_ratio_median": statistics.median(cpu_ratios),
        "a_median_s": statistics.median(times_a),
        "b_median_s": statistics.median(times_b),
        "compile_a_s": a["compile_s"],
        "compile_b_s": b["compile_s"],
    }


def main(argv):
    del argv
    from genreward_jax.atomic import atomic_write_json
    from genreward_jax.host_memory import reuse_scratch_memory

    reused = _REUSE.value and reuse_scratch_memory()
    out = os.path.abspath(_OUT.value)
    args = (_PRESET.value, _OBS.value, _BATCH.value, _LENGTH.value)
    tree_a = compile_tree(_A.value, *args)
    tree_b = compile_tree(_B.value, *args)
    row = run_pairs(tree_a, tree_b, _STEPS.value)
    row.update(
        preset=_PRESET.value,
        obs=_OBS.value,
        batch=_BATCH.value,
        length=_LENGTH.value,
        a=os.path.abspath(_A.value),
        b=os.path.abspath(_B.value),
        loadavg_1m=os.getloadavg()[0],
        reuse_scratch_memory=reused,
    )
    print(
        f"{'':>10} {'A s/update':>11} {'B s/update':>11} {'B/A':>6} {'B/A cpu':>8} "
        f"{'compile A':>10} {'B':>6}"
    )
    print(
        f"{_PRESET.value + ' ' + _OBS.value:>10} {row['a_median_s']:>11.4f} "
        f"{row['b_median_s']:>11.4f} {row['ratio_median']:>6.3f} "
        f"{row['cpu_ratio_median']:>8.3f} {row['compile_a_s']:>10.1f} {row['compile_b_s']:>6.1f}"
    )
    print("pair ratios: " + " ".join(f"{r:.3f}" for r in row["ratios"]))
    atomic_write_json(out, row)
    print(f"wrote {out}")
    print(json.dumps({"ratio_median": row["ratio_median"]}))


if __name__ == "__main__":
    app.run(main)
