"""Throughput of the whole training loop: env steps/s, where the time goes, how busy the
accelerator is, and what one paper run (1M env steps) would take at that rate.

    .venv/bin/python -m bench.e2e                                  # CPU-sized, ~6 minutes
    .venv/bin/python -m bench.e2e --setting=paper --num_envs=1,4   # the paper's agent; a GPU's job

Each row is one real training run of `genreward_jax.main` (GenReward: the goal's video and FB
rewards, rendering, replay, training, checkpoints) in its own process; the loop's phase clock
(`progress.PhaseClock`, logged as perf/share_* per log line) splits its wall time into act
(policy), env (MuJoCo step and render), reward (the reward model), replay, train, eval and
checkpoint. Accelerator utilisation is the act + train share: the loop is synchronous, so
while MuJoCo steps the accelerator waits. The first log line (compiles) is left out of every
figure.

Settings:
  * cpu: the quickstart (DreamerV3 1m on the 39-d state, train ratio 32, batch 16×16), a tiny
    goal made here;
  * paper: the paper's pick-place agent (12m on 64² images, train ratio 512, batch 16×64) with a
    tiny-model goal (the rewards' encoders cost the same on any weights).
The overlapped loop (--loop=async) is not built yet, so every row is the synchronous loop.
Prints a table and writes JSON (default bench/results/e2e_<setting>.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from genreward_jax.atomic import atomic_write_json

SETTINGS = {
    "cpu": {
        "flags": ["--flagfile=configs/quickstart.cfg", "--eval_every=100000"],
        "goal": "configs/goals_quickstart.cfg",
        "steps": 1500,
        "log_every": 250,
    },
    "paper": {
        "flags": [
            "--flagfile=configs/pick_place.cfg",
            "--eval_every=100000",
            "--video=false",
        ],
        "goal": "configs/goals_pick_place_tiny.cfg",
        "steps": 3000,
        "log_every": 500,
    },
}
PHASES = ("act", "env", "reward", "replay", "train", "eval", "checkpoint")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="cpu")
    parser.add_argument("--num_envs", default="1,4", help="comma list, one run each")
    parser.add_argument("--steps", type=int, default=None, help="env steps per run")
    parser.add_argument("--workdir", default="bench/results/e2e_runs")
    parser.add_argument("--out", default=None)
    return parser.parse_args(argv)


def make_goal(goal_flagfile: str, workdir: str) -> str:
    out = os.path.join(workdir, "goal")
    path = os.path.join(out, "goal.npz")
    if not os.path.exists(path):
        subprocess.run(
            [
                sys.executable,
                "preprocessing/make_goals.py",
                f"--flagfile={goal_flagfile}",
                f"--out_dir={out}",
            ],
            check=True,
        )
    return path


def summarise(metrics_path: str) -> dict:
    """Means over the log lines after the first: env steps/s, updates/s, phase shares."""
    with open(metrics_path) as f:
        lines = [json.loads(line) for line in f if "perf/env_steps_per_s" in line]
    steady = lines[1:] or lines
    out = {
        "env_steps_per_s": float(np.mean([r["perf/env_steps_per_s"] for r in steady])),
        "updates_per_s": float(np.mean([r["perf/updates_per_s"] for r in steady])),
        "log_lines": len(steady),
    }
    for phase in PHASES:
        out[f"share_{phase}"] = float(np.mean([r.get(f"perf/share_{phase}", 0.0) for r in steady]))
    out["accelerator_utilisation"] = out["share_act"] + out["share_train"]
    out["projected_hours_1m_steps"] = 1e6 / out["env_steps_per_s"] / 3600
    return out


def run(setting: dict, goal: str, num_envs: int, steps: int, logdir: str) -> dict:
    shutil.rmtree(logdir, ignore_errors=True)  # a fresh run, not a resumed one
    command = [
        sys.executable,
        "-m",
        "genreward_jax.main",
        *setting["flags"],
        f"--goal_file={goal}",
        f"--num_envs={num_envs}",
        f"--steps={steps}",
        f"--log_every={setting['log_every']}",
        f"--checkpoint_every={steps // 2}",
        f"--logdir={logdir}",
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return {
        "num_envs": num_envs,
        "wall_s": time.perf_counter() - start,
        **summarise(os.path.join(logdir, "metrics.jsonl")),
    }


def table(rows: list[dict]) -> str:
    head = (
        "| loop | envs | env steps/s | updates/s | " + " | ".join(PHASES) + " | accel. | 1M steps |"
    )
    lines = [head, "|" + "---|" * (len(PHASES) + 6)]
    for r in rows:
        shares = " | ".join(f"{100 * r[f'share_{p}']:.0f}%" for p in PHASES)
        lines.append(
            f"| sync | {r['num_envs']} | {r['env_steps_per_s']:.1f} | {r['updates_per_s']:.2f} | "
            f"{shares} | {100 * r['accelerator_utilisation']:.0f}% | "
            f"{r['projected_hours_1m_steps']:.1f} h |"
        )
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    setting = SETTINGS[args.setting]
    steps = args.steps or setting["steps"]
    workdir = os.path.join(args.workdir, args.setting)
    goal = make_goal(setting["goal"], workdir)
    rows = []
    for n in [int(v) for v in args.num_envs.split(",") if v]:
        rows.append(run(setting, goal, n, steps, os.path.join(workdir, f"envs_{n}")))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    text = table(rows)
    print(text)
    out = args.out or f"bench/results/e2e_{args.setting}.json"
    atomic_write_json(out, {"setting": args.setting, "steps": steps, "rows": rows})
    print(f"wrote {out}")
    return {"rows": rows}


if __name__ == "__main__":
    main()
