"""Throughput of the whole training loop: env steps/s, where the time goes, how busy the
accelerator is, and what one paper run (1M env steps) would take at that rate.

    .venv/bin/python -m bench.e2e                                  # CPU-sized, ~6 minutes
    .venv/bin/python -m bench.e2e --setting=paper --num_envs=1,4   # the paper's agent; a GPU's job

Each row is one real training run of `genreward_jax.main` (GenReward: the goal's video and FB
rewards, rendering, replay, training, checkpoints) in its own process; the loop's phase clock
(`progress.PhaseClock`, logged as perf/share_* per log line) splits its wall time into act
(policy), env (MuJoCo step and render), reward (the reward model), replay, train, eval and
checkpoint. Rows run the synchronous loop (--loop=sync: while MuJoCo steps the accelerator
waits) and the overlapped one (--loop=async: the actor thread's phases as above plus its wait
for the rate limiter; the learner thread's train, replay and wait shares beside them).
Accelerator utilisation is the act + train share of the sync loop; of the async loop, the
learner's train share plus the actor's act share (an upper bound: the two can overlap). The
first log line (compiles) is left out of every figure. Each row also gives the run's final
evaluation return, so `--steps=3000 --seeds=0,1,2 --num_envs=1` compares what the two loops
learn in the quickstart (the return band).

Settings:
  * cpu: the quickstart (DreamerV3 1m on the 39-d state, train ratio 32, batch 16×16), a tiny
    goal made here;
  * paper: the paper's pick-place agent (12m on 64² images, train ratio 512, batch 16×64) with a
    tiny-model goal (the rewards' encoders cost the same on any weights).
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
        "steps": 2000,  # 489 updates per row at train ratio 512 (1 env), ~2,000 for four rows
        "log_every": 500,
    },
}
PHASES = ("act", "env", "reward", "replay", "train", "eval", "checkpoint", "wait")
LEARNER_PHASES = ("train", "replay", "wait")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="cpu")
    parser.add_argument("--num_envs", default="1,4", help="comma list, one run each")
    parser.add_argument("--loops", default="sync,async", help="comma list of --loop values")
    parser.add_argument("--seeds", default="0", help="comma list; one run per seed")
    parser.add_argument(
        "--reuse_scratch_memory",
        default="true",
        help="comma list of the trainer's --reuse_scratch_memory values (true,false compares)",
    )
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


def summarise(metrics_path: str, loop: str) -> dict:
    """Means over the log lines after the first: env steps/s, updates/s, phase shares; and the
    last evaluation's return and success."""
    with open(metrics_path) as f:
        records = [json.loads(line) for line in f]
    lines = [r for r in records if "perf/env_steps_per_s" in r]
    steady = lines[1:] or lines
    out = {
        "env_steps_per_s": float(np.mean([r["perf/env_steps_per_s"] for r in steady])),
        "updates_per_s": float(np.mean([r["perf/updates_per_s"] for r in steady])),
        "log_lines": len(steady),
    }
    for phase in PHASES:
        out[f"share_{phase}"] = float(np.mean([r.get(f"perf/share_{phase}", 0.0) for r in steady]))
    for phase in LEARNER_PHASES:
        out[f"learner_share_{phase}"] = float(
            np.mean([r.get(f"perf/learner_share_{phase}", 0.0) for r in steady])
        )
    if loop == "async":
        busy = out["learner_share_train"] + out["share_act"]
    else:
        busy = out["share_act"] + out["share_train"]
    out["accelerator_utilisation"] = min(1.0, busy)
    out["projected_hours_1m_steps"] = 1e6 / out["env_steps_per_s"] / 3600
    evals = [r for r in records if "eval/return" in r]
    out["final_eval_return"] = evals[-1]["eval/return"] if evals else float("nan")
    out["final_eval_success"] = evals[-1]["eval/success"] if evals else float("nan")
    return out


def run(
    setting: dict,
    goal: str,
    loop: str,
    num_envs: int,
    seed: int,
    steps: int,
    logdir: str,
    reuse_scratch: bool = True,
) -> dict:
    shutil.rmtree(logdir, ignore_errors=True)  # a fresh run, not a resumed one
    command = [
        sys.executable,
        "-m",
        "genreward_jax.main",
        *setting["flags"],
        f"--goal_file={goal}",
        f"--loop={loop}",
        f"--num_envs={num_envs}",
        f"--seed={seed}",
        f"--steps={steps}",
        f"--log_every={setting['log_every']}",
        f"--checkpoint_every={steps // 2}",
        f"--logdir={logdir}",
        f"--reuse_scratch_memory={reuse_scratch}",
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return {
        "loop": loop,
        "num_envs": num_envs,
        "seed": seed,
        "reuse_scratch_memory": reuse_scratch,
        "wall_s": time.perf_counter() - start,
        **summarise(os.path.join(logdir, "metrics.jsonl"), loop),
    }


def table(rows: list[dict]) -> str:
    head = (
        "| loop | envs | seed | reuse | env steps/s | updates/s | "
        + " | ".join(PHASES)
        + " | learner train/wait | accel. | 1M steps | final eval return |"
    )
    lines = [head, "|" + "---|" * (len(PHASES) + 10)]
    for r in rows:
        shares = " | ".join(f"{100 * r[f'share_{p}']:.0f}%" for p in PHASES)
        learner = (
            f"{100 * r['learner_share_train']:.0f}% / {100 * r['learner_share_wait']:.0f}%"
            if r["loop"] == "async"
            else "-"
        )
        reuse = "yes" if r.get("reuse_scratch_memory", True) else "no"
        lines.append(
            f"| {r['loop']} | {r['num_envs']} | {r['seed']} | {reuse} | "
            f"{r['env_steps_per_s']:.1f} | "
            f"{r['updates_per_s']:.2f} | {shares} | {learner} | "
            f"{100 * r['accelerator_utilisation']:.0f}% | "
            f"{r['projected_hours_1m_steps']:.1f} h | {r['final_eval_return']:.1f} |"
        )
    return "\n".join(lines)


def return_bands(rows: list[dict]) -> dict[str, dict]:
    """Final eval return per (loop, envs) over seeds: mean, min, max."""
    groups: dict[str, list[float]] = {}
    for r in rows:
        groups.setdefault(f"{r['loop']} x{r['num_envs']}", []).append(r["final_eval_return"])
    return {
        key: {
            "mean": float(np.mean(v)),
            "min": float(np.min(v)),
            "max": float(np.max(v)),
            "runs": len(v),
        }
        for key, v in groups.items()
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    setting = SETTINGS[args.setting]
    steps = args.steps or setting["steps"]
    workdir = os.path.join(args.workdir, args.setting)
    goal = make_goal(setting["goal"], workdir)
    rows = []
    reuse_values = []
    for value in [v for v in args.reuse_scratch_memory.split(",") if v]:
        if value not in ("true", "false"):
            raise SystemExit(f"--reuse_scratch_memory takes true and/or false, got {value!r}")
        reuse_values.append(value == "true")
    for seed in [int(v) for v in args.seeds.split(",") if v]:
        for n in [int(v) for v in args.num_envs.split(",") if v]:
            for loop in [v for v in args.loops.split(",") if v]:
                for reuse in reuse_values:
                    name = f"{loop}_envs_{n}_seed_{seed}" + ("" if reuse else "_noreuse")
                    logdir = os.path.join(workdir, name)
                    rows.append(run(setting, goal, loop, n, seed, steps, logdir, reuse))
                    print(table(rows[-1:]).splitlines()[-1], flush=True)
    text = table(rows)
    print(text)
    bands = return_bands(rows)
    for key, band in bands.items():
        print(
            f"{key}: final eval return {band['mean']:.1f} [{band['min']:.1f}, {band['max']:.1f}] "
            f"over {band['runs']} seed(s)"
        )
    out = args.out or f"bench/results/e2e_{args.setting}.json"
    atomic_write_json(
        out, {"setting": args.setting, "steps": steps, "rows": rows, "return_bands": bands}
    )
    print(f"wrote {out}")
    return {"rows": rows}


if __name__ == "__main__":
    main()
