"""Learning benchmark: DreamerV3 on Meta-World reach-v3 from the 39-d proprioceptive vector.

Trains for --steps env steps with the real training loop (genreward_jax.trainer), evaluating
every --eval_every steps, and compares the evaluation return and success with a uniform random
policy on the same eval episodes (same eval env seeds). Prints a table and writes JSON.

    .venv/bin/python bench/learn.py --steps 20000 --out bench/results/learn.json --logdir /tmp/learn

Defaults: 1m preset, lr 2e-4 with 100 warmup updates (the official 4e-5 with 1000 warmup
updates is meant for runs of far more updates than the ~4900 made here), batch 16 x 16, train
ratio 64, action repeat 2 with 128-step episodes (256 physics steps, like the paper's episodes).
Measured (shared 2-core CPU), official start (no prefill, 4,937 updates): 20k steps in 23 min,
final eval return 1698 = 5.7x random, success 0.9 (with the former 1,000-step random prefill:
5.0x, success 0.4).

Target: clear learning on a 2-core CPU within 30 minutes, i.e. a final evaluation
return at least twice the random policy's, with success rising.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from genreward_jax import evaluation  # noqa: E402
from genreward_jax.atomic import atomic_write
from genreward_jax.dreamer import Agent, preset  # noqa: E402
from genreward_jax.envs import EnvBatch, EnvConfig  # noqa: E402
from genreward_jax.envs.flags import derive_seed  # noqa: E402
from genreward_jax.metrics_log import read_metrics  # noqa: E402
from genreward_jax.trainer import Trainer, TrainerConfig  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="reach-v3")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument(
        "--prefill", type=int, default=0, help="random-action env steps (0: the official start)"
    )
    parser.add_argument("--train_ratio", type=float, default=64.0)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--batch_length", type=int, default=16)
    parser.add_argument("--preset", default="1m")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--num_envs", type=int, default=1)
    parser.add_argument("--time_limit", type=int, default=128)
    parser.add_argument("--action_repeat", type=int, default=2)
    parser.add_argument("--eval_every", type=int, default=2000)
    parser.add_argument("--eval_episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--logdir", default="/tmp/genreward_learn")
    parser.add_argument("--out", default="bench/results/learn.json")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    train_envs = [
        EnvConfig(
            args.task,
            seed=derive_seed(args.seed, i, 0),
            time_limit=args.time_limit,
            action_repeat=args.action_repeat,
            render=False,
        )
        for i in range(args.num_envs)
    ]
    eval_envs = [
        EnvConfig(
            args.task,
            seed=derive_seed(args.seed, 0, 1),
            time_limit=args.time_limit,
            action_repeat=args.action_repeat,
            render=False,
        )
    ]
    start = time.perf_counter()
    random_result = evaluation.evaluate(
        EnvBatch,
        eval_envs,
        evaluation.random_policy(4, args.seed),
        None,
        args.eval_episodes,
        video_key=None,
    )
    random_metrics = random_result.metrics()

    agent_config = preset(args.preset, compute_dtype="float32", lr=args.lr, warmup=args.warmup)
    config = TrainerConfig(
        logdir=args.logdir,
        steps=args.steps,
        train_ratio=args.train_ratio,
        batch_size=args.batch_size,
        batch_length=args.batch_length,
        replay_capacity=max(args.steps, 10 * (args.batch_length + 1) * args.num_envs),
        prefill=args.prefill,
        obs_keys=("state",),
        eval_every=args.eval_every,
        eval_episodes=args.eval_episodes,
        eval_envs=1,
        video=False,
        checkpoint_every=args.steps,
        keep_checkpoints=1,
        log_every=500,
        seed=args.seed,
    )
    trainer = Trainer(
        config, lambda spec, act_dim: Agent(agent_config, spec, act_dim), train_envs, eval_envs
    )
    result = trainer.run()
    wall = time.perf_counter() - start

    curve = [
        {"env_steps": r["step"], "eval_return": r["eval/return"], "eval_success": r["eval/success"]}
        for r in read_metrics(args.logdir)
        if "eval/return" in r
    ]
    final = curve[-1] if curve else {}
    report = {
        "task": args.task,
        "preset": args.preset,
        "args": vars(args),
        "random": {
            "eval_return": random_metrics["eval/return"],
            "eval_success": random_metrics["eval/success"],
        },
        "curve": curve,
        "updates": result["updates"],
        "wall_seconds": wall,
        "return_ratio_vs_random": (
            final.get("eval_return", float("nan")) / max(random_metrics["eval/return"], 1e-9)
        ),
    }
    print(
        f"\nDreamerV3 {args.preset} on {args.task} (state), {args.eval_episodes} eval episodes, "
        f"{result['updates']} updates, {wall / 60:.1f} min wall"
    )
    print(f"{'policy':>16} | {'env steps':>9} | {'eval return':>11} | {'success':>7}")
    print(
        f"{'random':>16} | {'-':>9} | {random_metrics['eval/return']:11.1f} | "
        f"{random_metrics['eval/success']:7.2f}"
    )
    for point in curve:
        print(
            f"{'dreamer':>16} | {point['env_steps']:9d} | {point['eval_return']:11.1f} | "
            f"{point['eval_success']:7.2f}"
        )
    print(f"final return / random return = {report['return_ratio_vs_random']:.2f}")
    if os.path.dirname(args.out):
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
    atomic_write(args.out, json.dumps(report, indent=2) + "\n")
    png = os.path.splitext(args.out)[0] + ".png"
    plot(report, png)
    print(f"wrote {args.out} and {png}")
    return report


def plot(report: dict, path: str) -> None:
    """Eval return (left axis) and success (right axis) over env steps, random policy dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [p["env_steps"] for p in report["curve"]]
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.plot(
        steps,
        [p["eval_return"] for p in report["curve"]],
        marker="o",
        color="C0",
        label="DreamerV3 eval return",
    )
    ax.axhline(
        report["random"]["eval_return"],
        color="C0",
        ls="--",
        alpha=0.6,
        label="random policy return",
    )
    ax.set_xlabel("env steps")
    ax.set_ylabel("eval return (dense)")
    ax.grid(alpha=0.3)
    right = ax.twinx()
    right.plot(
        steps,
        [p["eval_success"] for p in report["curve"]],
        marker="s",
        color="C2",
        label="success rate",
    )
    right.set_ylim(-0.05, 1.05)
    right.set_ylabel("eval success rate")
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="upper left")
    args = report["args"]
    ax.set_title(
        f"{report['task']}: DreamerV3 {report['preset']} (state), "
        f"{args['eval_episodes']} eval episodes, seed {args['seed']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
