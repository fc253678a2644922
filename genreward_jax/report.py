"""A sweep's results as the paper shows them: curves per task, a final-return table, IQM.

    python -m genreward_jax.report configs/sweeps/main_comparison.yaml [--out=DIR]

Reads each run's `metrics.jsonl` (whatever has been logged so far: a sweep can be reported while
it runs) and writes to `--out` (default `<sweep logdir>/report/`):

  curves.png   one panel per task (the sweep's `task` axis, else one panel), one line per method
               (every other axis but `seed`), the mean over seeds with a ±1 std band; the dense
               env return of the evaluations, which is what the paper plots whatever the reward
  final.md / final.csv   per task and method: the last evaluation's dense return and success,
               mean ± std over seeds, and the number of seeds
  iqm.md       per method: the interquartile mean over runs and tasks of the final return
               normalised per task (1 = the best method's mean on that task), with a 95%
               stratified-bootstrap confidence interval (rliable)

Runs with no evaluation yet are listed as missing, not silently dropped.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from genreward_jax.atomic import atomic_write
from genreward_jax.metrics_log import read_metrics
from genreward_jax.sweep import Run, SweepError, load_sweep

RETURN_KEY, SUCCESS_KEY = "eval/dense_return", "eval/success"


def group_of(run: Run) -> tuple[str, str, str]:
    """(task, method, seed) names of a run from its axes: `task` and `seed` by name, the
    method is every other axis value joined with '/' (e.g. 'genreward' or 'alpha_0.5/beta_1')."""
    axes = dict(run.axes)
    method = "/".join(v for a, v in run.axes if a not in ("task", "seed")) or "run"
    return axes.get("task", "all"), method, axes.get("seed", "seed_0")


def collect(runs: Sequence[Run]) -> tuple[dict, list[str]]:
    """{task: {method: [curve per seed]}} with curve = list of (step, return, success), and the
    names of runs without any evaluation yet."""
    data: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    missing = []
    for run in runs:
        task, method, _ = group_of(run)
        records = read_metrics(run.logdir) if os.path.isdir(run.logdir) else []
        curve = [
            (int(r["step"]), float(r[RETURN_KEY]), float(r.get(SUCCESS_KEY, np.nan)))
            for r in records
            if RETURN_KEY in r
        ]
        if curve:
            data[task][method].append(curve)
        else:
            missing.append(run.name)
    return data, missing


def _common(curves: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeds' curves on their common evaluation steps: steps [S], returns and success [seeds, S]
    (every seed's curve cut to the shortest, so a band never mixes seed counts)."""
    n = min(len(c) for c in curves)
    steps = np.array([p[0] for p in curves[0][:n]])
    returns = np.array([[p[1] for p in c[:n]] for c in curves])
    success = np.array([[p[2] for p in c[:n]] for c in curves])
    return steps, returns, success


def final_table(data: dict) -> list[dict[str, Any]]:
    rows = []
    for task in sorted(data):
        for method in sorted(data[task]):
            finals = np.array([c[-1][1:] for c in data[task][method]])  # [seeds, 2]
            rows.append(
                {
                    "task": task,
                    "method": method,
                    "seeds": len(finals),
                    "final_step": min(c[-1][0] for c in data[task][method]),
                    "return_mean": float(finals[:, 0].mean()),
                    "return_std": float(finals[:, 0].std()),
                    "success_mean": float(np.nanmean(finals[:, 1])),
                    "success_std": float(np.nanstd(finals[:, 1])),
                }
            )
    return rows


def iqm_scores(
    data: dict, reps: int = 2000, seed: int = 0
) -> dict[str, tuple[float, float, float]]:
    """{method: (IQM, CI low, CI high)} of per-task normalised final returns; only methods with
    a run on every task and tasks with every method, seeds cut to the fewest (rliable needs a
    [runs, tasks] matrix)."""
    from rliable import library as rly
    from rliable import metrics

    methods = sorted(set.intersection(*(set(m) for m in data.values())))
    tasks = sorted(data)
    if not methods:
        return {}
    seeds = min(len(data[t][m]) for t in tasks for m in methods)
    finals = {
        m: np.array([[data[t][m][s][-1][1] for t in tasks] for s in range(seeds)]) for m in methods
    }
    best = np.max([f.mean(0) for f in finals.values()], axis=0)  # [tasks]
    scale = np.where(np.abs(best) > 1e-12, best, 1.0)
    scores = {m: f / scale for m, f in finals.items()}
    point, interval = rly.get_interval_estimates(
        scores,
        lambda x: np.array([metrics.aggregate_iqm(x)]),
        reps=reps,
        random_state=np.random.RandomState(seed),
    )
    return {
        m: (float(point[m][0]), float(interval[m][0, 0]), float(interval[m][1, 0])) for m in methods
    }


def plot_curves(data: dict, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted(data)
    methods = sorted({m for t in tasks for m in data[t]})
    colours = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for method in sorted(data[task]):
            steps, returns, _ = _common(data[task][method])
            mean, std = returns.mean(0), returns.std(0)
            ax.plot(steps, mean, color=colours[method], label=f"{method} ({len(returns)} seeds)")
            ax.fill_between(steps, mean - std, mean + std, color=colours[method], alpha=0.2)
        ax.set_title(task)
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("eval return (dense env reward)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _markdown_final(rows: list[dict]) -> str:
    lines = [
        "| task | method | seeds | env steps | final return | final success |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['task']} | {r['method']} | {r['seeds']} | {r['final_step']} | "
        f"{r['return_mean']:.1f} ± {r['return_std']:.1f} | "
        f"{r['success_mean']:.2f} ± {r['success_std']:.2f} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n\nMean ± std over seeds of each run's last evaluation.\n"


def _csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else ["task"])
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write_report(sweep_path: str, out_dir: str | None = None, reps: int = 2000) -> dict[str, Any]:
    name, runs = load_sweep(sweep_path)
    data, missing = collect(runs)
    if not data:
        raise SweepError(f"no run of sweep {name} has an evaluation yet ({len(runs)} runs)")
    out_dir = out_dir or os.path.join(
        os.path.commonpath([r.logdir for r in runs]) if len(runs) > 1 else runs[0].logdir, "report"
    )
    os.makedirs(out_dir, exist_ok=True)
    rows = final_table(data)
    iqm = iqm_scores(data, reps)
    plot_curves(
        data, os.path.join(out_dir, "curves.png"), f"{name}: eval return, mean ± std over seeds"
    )
    atomic_write(os.path.join(out_dir, "final.md"), _markdown_final(rows))
    atomic_write(os.path.join(out_dir, "final.csv"), _csv(rows))
    iqm_lines = ["| method | IQM of normalised final return | 95% CI |", "|---|---|---|"]
    iqm_lines += [f"| {m} | {v[0]:.3f} | [{v[1]:.3f}, {v[2]:.3f}] |" for m, v in iqm.items()]
    atomic_write(
        os.path.join(out_dir, "iqm.md"),
        "\n".join(iqm_lines)
        + (
            "\n\nFinal dense return normalised per task by the best method's mean on it; "
            "interquartile mean over runs and tasks; stratified bootstrap (rliable).\n"
        ),
    )
    return {"out_dir": out_dir, "rows": rows, "iqm": iqm, "missing": missing}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", help="the sweep YAML file the runs came from")
    parser.add_argument("--out", default=None, help="output folder (default <logdir>/report)")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap replications")
    args = parser.parse_args(argv)
    try:
        report = write_report(args.sweep, args.out, args.reps)
    except SweepError as error:
        sys.exit(f"error: {error}")
    print(_markdown_final(report["rows"]))
    if report["missing"]:
        print(
            f"{len(report['missing'])} run(s) without an evaluation yet: "
            + ", ".join(report["missing"])
        )
    print(f"wrote {report['out_dir']}/{{curves.png,final.md,final.csv,iqm.md}}")
    return report


if __name__ == "__main__":
    main()
