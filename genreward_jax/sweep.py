"""Sweeps: expand a grid of runs, show the plan, launch it locally or on SLURM (submitit).

    python -m genreward_jax.sweep configs/sweeps/main_comparison.yaml --dry_run
    python -m genreward_jax.sweep configs/sweeps/main_comparison.yaml --executor=local --jobs=4 \\
        --gpus=0,1,2,3
    python -m genreward_jax.sweep configs/sweeps/main_comparison.yaml --executor=slurm \\
        --slurm_partition=gpu --timeout_min=1440

A sweep file is YAML (a grid is a mapping of axes to values, which YAML says plainly and a
flagfile cannot), but every run it expands to is an ordinary `genreward_jax.main` command: the
sweep's flagfiles, each axis value's flagfiles and flags, then ``--logdir``. So a run of a sweep
is reproduced, resumed or debugged by hand with the command the plan prints.

    name: main_comparison
    logdir: runs/sweeps/main_comparison      # one subdirectory per run
    flagfiles: []                            # for every run
    flags: {steps: 1000000}                  # for every run
    axes:                                    # the grid: the product of every axis
      task:
        pick_place: {flagfiles: [configs/pick_place.cfg]}
      method:
        genreward: {}
        dreamerv3: {flagfiles: [configs/baseline_dreamerv3.cfg]}
      seed: [0, 1, 2]                        # plain values set the flag named by the axis

A run's directory is ``<logdir>/<value>/<value>/...`` in axis order (``pick_place/genreward/
seed_0``). Launching again skips complete runs (the final checkpoint exists) and resumes
incomplete ones, because every run resumes on its own logdir; on SLURM a preempted or timed-out
job is requeued by submitit and resumes the same way.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")


class SweepError(ValueError):
    """A sweep file that cannot be expanded; the message names the key at fault."""


@dataclasses.dataclass(frozen=True)
class Run:
    """One run of a sweep: its readable name, logdir and the main CLI arguments."""

    name: str
    logdir: str
    args: tuple[str, ...]  # flagfiles, then flags, then --logdir
    steps: int | None  # --steps when the sweep sets it (used to tell complete runs)
    axes: tuple[tuple[str, str], ...] = ()  # (axis, value name) in axis order, for reports

    def command(self, python: str = sys.executable) -> list[str]:
        return [python, "-m", "genreward_jax.main", *self.args]


def _flag(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no{name}"
    if isinstance(value, list | tuple):
        return f"--{name}={','.join(str(v) for v in value)}"
    return f"--{name}={value}"


def _value_parts(axis: str, key: str, value: Any, where: str) -> tuple[list[str], dict]:
    """(flagfiles, flags) of one axis value: a mapping with 'flagfiles'/'flags', or a scalar
    that sets the flag named like the axis."""
    if isinstance(value, Mapping):
        unknown = set(value) - {"flagfiles", "flags"}
        if unknown:
            raise SweepError(f"{where}: unknown keys {sorted(unknown)} (use flagfiles, flags)")
        return list(value.get("flagfiles") or []), dict(value.get("flags") or {})
    return [], {axis: value if value is not None else key}


def _axis_values(axis: str, spec: Any, where: str) -> list[tuple[str, list[str], dict]]:
    """[(directory name, flagfiles, flags)] of an axis given as a mapping or a list."""
    if isinstance(spec, Mapping):
        items = [(str(k), *_value_parts(axis, str(k), v, f"{where}.{k}")) for k, v in spec.items()]
    elif isinstance(spec, list):
        items = [(f"{axis}_{v}", *_value_parts(axis, str(v), v, where)) for v in spec]
    else:
        raise SweepError(f"{where}: an axis is a mapping of named values or a list of values")
    if not items:
        raise SweepError(f"{where}: an axis needs at least one value")
    for name, _, _ in items:
        if not _NAME.match(name):
            raise SweepError(f"{where}: value name {name!r} must be letters, digits or _.+-")
    return items


def expand(spec: Mapping[str, Any], source: str = "sweep") -> tuple[str, list[Run]]:
    """A parsed sweep file -> (sweep name, runs in grid order)."""
    unknown = set(spec) - {"name", "logdir", "flagfiles", "flags", "axes", "description"}
    if unknown:
        raise SweepError(f"{source}: unknown top-level keys {sorted(unknown)}")
    for key in ("name", "logdir", "axes"):
        if key not in spec:
            raise SweepError(f"{source}: missing key {key!r}")
    if not isinstance(spec["axes"], Mapping) or not spec["axes"]:
        raise SweepError(f"{source}: 'axes' must be a non-empty mapping")
    axes = [_axis_values(str(a), v, f"{source}: axes.{a}") for a, v in spec["axes"].items()]
    base_files = list(spec.get("flagfiles") or [])
    base_flags = dict(spec.get("flags") or {})
    runs = []
    for combo in itertools.product(*axes):
        files, values = list(base_files), dict(base_flags)
        for _, axis_files, axis_flags in combo:
            files += axis_files
            values.update(axis_flags)
        if "logdir" in values:
            raise SweepError(f"{source}: runs get their logdir from the sweep; do not set it")
        name = "/".join(part for part, _, _ in combo)
        logdir = os.path.join(str(spec["logdir"]), *name.split("/"))
        args = (
            *(f"--flagfile={f}" for f in files),
            *(_flag(k, v) for k, v in values.items()),
            f"--logdir={logdir}",
        )
        steps = values.get("steps")
        axis_values = tuple(
            (str(axis), part) for axis, (part, _, _) in zip(spec["axes"], combo, strict=True)
        )
        runs.append(Run(name, logdir, args, int(steps) if steps is not None else None, axis_values))
    return str(spec["name"]), runs


def load_sweep(path: str) -> tuple[str, list[Run]]:
    import yaml

    if not os.path.isfile(path):
        raise SweepError(f"sweep file not found: {path}")
    with open(path) as f:
        try:
            spec = yaml.safe_load(f)
        except yaml.YAMLError as error:
            raise SweepError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(spec, Mapping):
        raise SweepError(f"{path}: a sweep file is a YAML mapping")
    name, runs = expand(spec, path)
    for run in runs:
        for arg in run.args:
            if arg.startswith("--flagfile=") and not os.path.isfile(arg.split("=", 1)[1]):
                raise SweepError(
                    f"{path}: run {run.name} names a missing flagfile {arg.split('=', 1)[1]}"
                )
    return name, runs


def run_state(run: Run) -> str:
    """'complete' (a checkpoint at --steps exists), 'partial' (some checkpoint) or 'new'."""
    directory = os.path.join(run.logdir, "checkpoints")
    saved = (
        [int(d) for d in os.listdir(directory) if d.isdigit()] if os.path.isdir(directory) else []
    )
    if not saved:
        return "new"
    return "complete" if run.steps is not None and max(saved) >= run.steps else "partial"


# ------------------------------------------------------------------------------ executors


def launch_local(
    runs: Sequence[Run], jobs: int, gpus: Sequence[str] = (), poll_s: float = 2.0
) -> dict[str, int]:
    """`jobs` runs at a time as subprocesses; slot i gets CUDA_VISIBLE_DEVICES=gpus[i] when
    GPUs are given (else the CPU). Output goes to <logdir>/sweep.log. Returns exit codes."""
    if gpus and len(gpus) < jobs:
        raise SweepError(f"--jobs={jobs} needs as many --gpus, got {list(gpus)}")
    pending = list(runs)
    running: dict[int, tuple[subprocess.Popen, Run, Any]] = {}
    codes: dict[str, int] = {}
    start = time.perf_counter()
    while pending or running:
        for slot in range(jobs):
            if slot in running or not pending:
                continue
            run = pending.pop(0)
            os.makedirs(run.logdir, exist_ok=True)
            log = open(os.path.join(run.logdir, "sweep.log"), "a")
            env = dict(os.environ)
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = str(gpus[slot])
            running[slot] = (
                subprocess.Popen(run.command(), stdout=log, stderr=subprocess.STDOUT, env=env),
                run,
                log,
            )
            print(
                f"[{(time.perf_counter() - start) / 60:6.1f} min] started {run.name}"
                + (f" on GPU {gpus[slot]}" if gpus else ""),
                flush=True,
            )
        time.sleep(poll_s)
        for slot, (proc, run, log) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[slot]
            codes[run.name] = proc.returncode
            status = (
                "done"
                if proc.returncode == 0
                else (f"FAILED ({proc.returncode}), see {run.logdir}/sweep.log")
            )
            print(
                f"[{(time.perf_counter() - start) / 60:6.1f} min] {run.name}: {status}", flush=True
            )
    return codes


class SubmittedRun:
    """The callable one SLURM array task runs; requeued by submitit on preemption or timeout.

    ``checkpoint`` is submitit's hook: it resubmits the same run, which resumes from its logdir
    (the trainer checkpoints on SIGTERM), so nothing is lost beyond the last update."""

    def __init__(self, run: Run):
        self.run = run

    def __call__(self) -> int:
        os.makedirs(self.run.logdir, exist_ok=True)
        result = subprocess.run(self.run.command(), check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{self.run.name} exited with {result.returncode}")
        return result.returncode

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(SubmittedRun(self.run))


def launch_submitit(
    runs: Sequence[Run], folder: str, cluster: str | None, parameters: Mapping[str, Any], wait: bool
) -> list[Any]:
    """One submitit job array, one run per task. cluster: 'slurm', 'local' (submitit's local
    executor, for tests) or None (auto: SLURM where sbatch exists)."""
    import submitit

    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    executor.update_parameters(**parameters)
    jobs = executor.submit_array([SubmittedRun(run) for run in runs])
    for run, job in zip(runs, jobs, strict=True):
        print(f"submitted {run.name}: job {job.job_id}", flush=True)
    if wait:
        for job in jobs:
            job.result()
    return jobs


# ------------------------------------------------------------------------------ CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", help="a sweep YAML file (configs/sweeps/)")
    parser.add_argument("--dry_run", action="store_true", help="print the plan only")
    parser.add_argument("--executor", default="local", choices=("local", "slurm", "submitit_local"))
    parser.add_argument("--jobs", type=int, default=1, help="local: runs at a time")
    parser.add_argument("--gpus", default="", help="local: comma-separated GPU ids, one a slot")
    parser.add_argument("--only", default="", help="run names containing this substring")
    parser.add_argument(
        "--rerun_complete",
        action="store_true",
        help="also launch runs whose final checkpoint exists (no-ops)",
    )
    slurm = parser.add_argument_group("slurm (submitit)")
    slurm.add_argument("--slurm_partition", default=None)
    slurm.add_argument("--timeout_min", type=int, default=24 * 60)
    slurm.add_argument("--gpus_per_node", type=int, default=1)
    slurm.add_argument("--cpus_per_task", type=int, default=8)
    slurm.add_argument("--mem_gb", type=int, default=64)
    slurm.add_argument("--array_parallelism", type=int, default=64)
    slurm.add_argument("--wait", action="store_true", help="wait for every job to finish")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    try:
        name, runs = load_sweep(args.sweep)
    except SweepError as error:
        sys.exit(f"error: {error}")
    runs = [r for r in runs if args.only in r.name]
    states = {r.name: run_state(r) for r in runs}
    todo = [r for r in runs if args.rerun_complete or states[r.name] != "complete"]
    print(
        f"sweep {name}: {len(runs)} runs, {len(todo)} to launch "
        f"({sum(s == 'complete' for s in states.values())} complete, "
        f"{sum(s == 'partial' for s in states.values())} to resume)"
    )
    for run in runs:
        print(f"  [{states[run.name]:8s}] {run.name}\n      {' '.join(run.command('python'))}")
    if args.dry_run or not todo:
        return {"name": name, "runs": runs, "states": states}
    if args.executor == "local":
        gpus = [g for g in args.gpus.split(",") if g]
        codes = launch_local(todo, args.jobs, gpus)
        failed = [n for n, c in codes.items() if c != 0]
        if failed:
            sys.exit(f"error: {len(failed)} run(s) failed: {', '.join(failed)}")
        return {"name": name, "runs": runs, "codes": codes}
    folder = os.path.join(
        os.path.commonpath([r.logdir for r in runs]) if len(runs) > 1 else runs[0].logdir,
        "submitit",
    )
    if args.executor == "slurm":
        parameters = {
            "timeout_min": args.timeout_min,
            "gpus_per_node": args.gpus_per_node,
            "cpus_per_task": args.cpus_per_task,
            "mem_gb": args.mem_gb,
            "slurm_array_parallelism": args.array_parallelism,
            "name": f"genreward-{name}",
        }
        if args.slurm_partition:
            parameters["slurm_partition"] = args.slurm_partition
        cluster = "slurm"
    else:
        parameters = {"timeout_min": args.timeout_min}
        cluster = "local"
    jobs = launch_submitit(todo, folder, cluster, parameters, args.wait)
    return {"name": name, "runs": runs, "jobs": jobs}


if __name__ == "__main__":
    main()
