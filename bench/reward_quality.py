"""Reward quality of GenReward's generated terms and the baselines' rewards on policies of graded
competence.

    .venv/bin/python preprocessing/make_goals.py --flagfile=configs/goals_pick_place_tiny.cfg
    .venv/bin/python -m bench.reward_quality --goal_file=goals/pick-place-tiny/goal.npz

Rolls out the scripted expert, the expert with Gaussian action noise (--noise) and uniform
random actions, --episodes each, at the goal's placement (--placement=goal, the default, or
random), then scores the terms of every --reward_models plug-in: GenReward's video-reward
variants and FB reward (F and B trained on a replay of those rollouts; 'fb/state' is the oracle
control with the 39-d state as goal space, present when the goal stores the expert's states),
VLM-RM's CLIP reward (λ = 0.5 and λ = 0) and RoboCLIP's episode score. Same command on a GPU with
a goal made from pretrained weights. About 4 minutes on a 2-core CPU with the tiny models and the
defaults.

Prints a markdown table and writes JSON + PNG (default bench/results/reward_quality_<task>.*).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np

from genreward_jax.goals import load_goal
from genreward_jax.rewards import plugins, quality
from genreward_jax.rewards.quality_terms import FBTerm
from genreward_jax.rewards.video import VIDEO_VARIANTS

RATED = [name for name, p in plugins.PLUGINS.items() if p.quality_terms is not None]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--goal_file", required=True)
    parser.add_argument("--episodes", type=int, default=4, help="episodes per level")
    parser.add_argument("--noise", default="0.3,0.6,1.0", help="expert action-noise levels")
    parser.add_argument("--time_limit", type=int, default=256, help="episode length (paper)")
    parser.add_argument("--interval", type=int, default=128, help="video window (paper)")
    parser.add_argument("--variants", default=",".join(VIDEO_VARIANTS))
    parser.add_argument(
        "--goal_steps",
        default="goal,episode",
        help="progress variants: env steps the goal video spans — goal (its "
        "recorded duration), episode (the episode length) or a number; a comma "
        "list scores each",
    )
    parser.add_argument(
        "--reward_models",
        default=",".join(RATED),
        help=f"reward models whose terms are scored (of {RATED})",
    )
    parser.add_argument(
        "--vlmrm_lambda",
        type=float,
        default=0.5,
        help="VLM-RM: λ of its row (a λ = 0 row, the CLIP cosine, is added)",
    )
    parser.add_argument("--placement", choices=("goal", "random"), default="goal")
    parser.add_argument("--fb_steps", type=int, default=3000)
    parser.add_argument(
        "--fb_lr",
        type=float,
        default=1e-3,
        help="higher than the online 1e-4: this is a few thousand updates",
    )
    parser.add_argument("--fb_z_dim", type=int, default=32)
    parser.add_argument("--fb_hidden", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="JSON path (PNG and .md beside it)")
    args = parser.parse_args(argv)
    args.noise = [float(s) for s in args.noise.split(",") if s]
    args.variants = [v for v in args.variants.split(",") if v]
    args.goal_steps = [s for s in args.goal_steps.split(",") if s]
    args.reward_models = [m for m in args.reward_models.split(",") if m]
    unknown = [m for m in args.reward_models if m not in RATED]
    if unknown:
        parser.error(f"--reward_models: {unknown} have no benchmark rows; choose from {RATED}")
    return args


def build_terms(args, goal, goal_file: str) -> list:
    """The terms of every --reward_models plug-in that has benchmark rows."""
    terms = []
    for name in args.reward_models:
        terms += plugins.PLUGINS[name].quality_terms(goal_file, goal, args)
    return terms


def main(argv=None) -> dict:
    args = parse_args(argv)
    start = time.perf_counter()
    goal = load_goal(args.goal_file)
    if args.placement == "goal" and goal.placement is None:
        raise SystemExit(f"{args.goal_file} records no placement; pass --placement=random")
    placement = goal.placement if args.placement == "goal" else None
    levels = quality.level_names(args.noise)
    print(
        f"{goal.task}: {len(levels)} levels x {args.episodes} episodes of {args.time_limit} "
        f"steps at the {args.placement} placement",
        flush=True,
    )
    rollouts = quality.collect_rollouts(
        goal.task,
        placement,
        args.noise,
        args.episodes,
        args.time_limit,
        goal.resolution,
        seed=args.seed,
    )
    terms = build_terms(args, goal, args.goal_file)
    rows = quality.evaluate_terms(terms, rollouts, levels)
    table = quality.format_table(rows, levels)
    print(table)
    out = args.out or os.path.join("bench", "results", f"reward_quality_{goal.task}.json")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    fb_losses = {
        t.name: [float(t.losses[:100].mean()), float(t.losses[-100:].mean())]
        for t in terms
        if isinstance(t, FBTerm)
    }
    result = {
        "goal_file": os.path.abspath(args.goal_file),
        "task": goal.task,
        "models": goal.provenance.get("models"),
        "source": goal.provenance["source"],
        "args": {k: v for k, v in vars(args).items()},
        "levels": levels,
        "rows": rows,
        "fb_loss_first_last_100": fb_losses,
        "success_rate": {
            lvl: float(np.mean([r.success for r in rollouts if r.level == lvl])) for lvl in levels
        },
        "seconds": time.perf_counter() - start,
        "backend": jax.default_backend(),
    }
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    with open(out.removesuffix(".json") + ".md", "w") as f:
        f.write(table + "\n")
    png = quality.plot(
        rows,
        levels,
        out.removesuffix(".json") + ".png",
        f"Reward quality on {goal.task} ({goal.provenance.get('models')} models, "
        f"{goal.provenance['source']} goal)",
    )
    print(f"wrote {out}, {png} ({result['seconds']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
