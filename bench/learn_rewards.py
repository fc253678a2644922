"""Do the generated rewards drive learning? Reward arms trained side by side on a CPU-sized task.

    .venv/bin/python -m bench.learn_rewards                  # about 45 min on a 2-core CPU
    .venv/bin/python -m bench.learn_rewards --dry_run        # the plan only

Every arm is a run of the real training loop (genreward_jax.trainer): DreamerV3 1m preset on the
39-d state, reach-v3, 128-step episodes with action repeat 2, every episode at the goal's
placement, the same seeds for every arm. Arms:

  dense             env reward, dense
  sparse            env reward only every 64 steps (the paper's sparse setting)
  sparse+fb_state   sparse env reward + FB reward, goal space 'state'  (CONTROL goal space)
  fb_state          FB reward alone, no env reward, goal space 'state' (CONTROL goal space)
  none              no reward at all (control: what the agent does without a signal)
  fb_dino           FB reward alone with DINOv3 features of 64x64 renders (tiny random-weight
                    encoders here: a reference for the paper's goal space, not evidence)

Goal space 'state' (B on the 39-d state, goal = the scripted goal's state at its keyframe)
bypasses the image encoder: it isolates the reward machinery (FB trained inside DreamerV3's step,
the action-aware reward in imagination, calibration, goal placement) from the encoders, whose
pretrained weights cannot be had here. It is a control, not the paper's method.

Evaluation: the dense env return and success of --eval_episodes episodes (eval envs always report
the dense reward, whatever the arm trains on). What the stochastic training policy does is
reported too, since at one placement every deterministic eval episode is the same: the share of
training episodes solved, the closest approach of the hand to its goal-frame position per
episode (from the run's replay), and for FB arms the correlation of Q with closeness to the goal
(`fb_q_goal_corr`), which shows whether FB's reward still points at the goal.

Each run is a subprocess writing its own JSON under --out_dir/runs, so rerunning the same command
skips finished runs. Writes curves (mean and range
over seeds) as PNG, JSON and a markdown table to --out_dir.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ARMS = {
    # name: (env reward mode or None for no env reward, FB goal space or None)
    "dense": ("dense", None),
    "sparse": ("sparse", None),
    "sparse+fb_state": ("sparse", "state"),
    "fb_state": (None, "state"),
    "none": (None, None),
    "fb_dino": (None, "dino"),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] + " Budget with the defaults: 12 runs of 5k env "
        "steps and 1,000 updates, about 45 min on a 2-core CPU (2 runs at a time)."
    )
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--task", default="reach-v3")
    parser.add_argument(
        "--goal_file",
        default=None,
        help="a scripted goal of --task (default: made with tiny models)",
    )
    parser.add_argument(
        "--goal_frame",
        default="last",
        choices=("keyframe", "last"),
        help="FB goal: the last goal frame (the solved scene) by default, since "
        "the tiny goal's keyframe is picked by random-weight CLIP",
    )
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--prefill", type=int, default=1000)
    parser.add_argument("--train_ratio", type=float, default=64.0)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--batch_length", type=int, default=16)
    parser.add_argument("--preset", default="1m")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--time_limit", type=int, default=128)
    parser.add_argument("--action_repeat", type=int, default=2)
    parser.add_argument("--sparse_interval", type=int, default=64)
    parser.add_argument("--beta", type=float, default=0.5)
    parser.add_argument(
        "--fb_lr",
        type=float,
        default=1e-3,
        help="above the paper's 1e-4: these runs make ~1000 updates, not 500k",
    )
    parser.add_argument(
        "--fb_freeze_after",
        type=int,
        default=None,
        help="freeze F and B after this many updates, as the paper does after "
        "100k env steps (default: never)",
    )
    parser.add_argument(
        "--fb_state_input",
        default="decoded",
        choices=("latent", "decoded"),
        help="F's state: the world model's latent, or the decoder's prediction "
        "of the 39-d state from it (stable while the latent drifts)",
    )
    parser.add_argument("--fb_z_dim", type=int, default=32)
    parser.add_argument("--fb_hidden", type=int, default=256)
    parser.add_argument("--eval_every", type=int, default=1000)
    parser.add_argument("--eval_episodes", type=int, default=5)
    parser.add_argument(
        "--eval_mode",
        default="mean",
        choices=("mean", "sample"),
        help="eval actions: the policy mean (deterministic: at one placement "
        "every episode is the same) or samples",
    )
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--out_dir", default="bench/results/learn_rewards")
    parser.add_argument("--dry_run", action="store_true")
    parser.add_argument("--run_one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown:
        parser.error(f"unknown arms {unknown}; choose from {list(ARMS)}")
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    return args


def default_goal(args) -> str:
    """A tiny-model scripted goal of the task (it records the placement and the states)."""
    path = os.path.join(args.out_dir, "goal", "goal.npz")
    if not os.path.exists(path):
        from preprocessing.goal_builder import GoalConfig, build_goal
        from preprocessing.models import ModelSpec

        build_goal(
            GoalConfig(
                task=args.task,
                goal_source="scripted",
                out_dir=os.path.dirname(path),
                models=ModelSpec(mode="tiny"),
                resolution=64,
                num_sampled_frames=17,
                seed=0,
                max_steps=args.time_limit * args.action_repeat,
            )
        )
    return path


def run_arm(args, arm: str, seed: int, goal_file: str, out: str) -> dict:
    """One training run of an arm; returns and writes its eval curve."""
    from genreward_jax.atomic import atomic_write
    from genreward_jax.dreamer import Agent, preset
    from genreward_jax.envs import ACT_DIM, EnvConfig
    from genreward_jax.envs.flags import derive_seed
    from genreward_jax.envs.metaworld_env import STATE_DIM
    from genreward_jax.metrics_log import read_metrics
    from genreward_jax.rewards import fb
    from genreward_jax.rewards.fb_extra_loss import FBExtraLoss, FBRewardSpec
    from genreward_jax.rewards.goal_rewards import GoalRewards, RewardConfig
    from genreward_jax.trainer import Trainer, TrainerConfig

    env_mode, space = ARMS[arm]
    rewards = GoalRewards(
        RewardConfig(
            goal_file=goal_file,
            video_reward=False,
            env_reward=env_mode is not None,
            reward_scaling="calibrated",
            goal_space=space or "state",
            goal_frame=args.goal_frame,
            episode_length=args.time_limit,
        ),
        num_envs=1,
        image_size=64,
    )
    base = dict(
        time_limit=args.time_limit,
        action_repeat=args.action_repeat,
        placements=rewards.placements,
        render=False,
    )
    train = [
        EnvConfig(
            args.task,
            seed=derive_seed(seed, 0, 0),
            sparse_interval=args.sparse_interval,
            reward_mode=env_mode or "dense",
            **base,
        )
    ]
    evals = [EnvConfig(args.task, seed=derive_seed(seed, 0, 1), reward_mode="dense", **base)]
    agent_config = preset(args.preset, compute_dtype="float32", lr=args.lr, warmup=100)
    extra = None
    if space is not None:
        state_dim = agent_config.feat_size if args.fb_state_input == "latent" else STATE_DIM
        spec = FBRewardSpec(
            state_dim=state_dim,
            action_dim=ACT_DIM,
            state_input=args.fb_state_input,
            goal_feature=rewards.goal_features,
            beta=args.beta,
            freeze_after_updates=(10**9 if args.fb_freeze_after is None else args.fb_freeze_after),
            env_reward=env_mode is not None,
            goal_space=space,
        )
        extra = FBExtraLoss(
            fb.FBConfig(z_dim=args.fb_z_dim, hidden=args.fb_hidden, lr=args.fb_lr), spec
        )
    logdir = out.removesuffix(".json")
    config = TrainerConfig(
        logdir=logdir,
        steps=args.steps,
        train_ratio=args.train_ratio,
        batch_size=args.batch_size,
        batch_length=args.batch_length,
        replay_capacity=args.steps + 1000,
        prefill=args.prefill,
        obs_keys=("state",),
        eval_every=args.eval_every,
        eval_episodes=args.eval_episodes,
        eval_mode=args.eval_mode,
        video=False,
        checkpoint_every=args.steps,
        keep_checkpoints=1,
        log_every=500,
        seed=seed,
    )
    start = time.perf_counter()
    result = Trainer(
        config,
        lambda spec, act_dim: Agent(agent_config, spec, act_dim, extra),
        train,
        evals,
        reward_model=rewards,
    ).run()
    record = {
        "arm": arm,
        "seed": seed,
        **curves_from_metrics(read_metrics(logdir)),
        "closest_approach": (
            closest_approach(logdir, rewards.goal.states[-1])
            if rewards.goal.states is not None
            else []
        ),
        "updates": result["updates"],
        "seconds": time.perf_counter() - start,
    }
    atomic_write(out, json.dumps(record, indent=1) + "\n")
    return record


def closest_approach(logdir: str, goal_state: np.ndarray) -> list[dict]:
    """Per training episode (from the replay of the run's last checkpoint): the closest the
    hand came to its position in the goal frame, ‖hand − hand_goal‖ (state[:3]), in metres.
    For reach this is the task's own success distance (success: < 0.05); unlike success it
    also shows an agent that heads for the goal without arriving."""
    from genreward_jax.replay_store import read_run_replay

    data = read_run_replay(logdir)["data"]
    state, first = np.asarray(data["state"])[0], np.asarray(data["is_first"])[0]
    starts = [*np.flatnonzero(first), len(state)]
    hand = np.asarray(goal_state, np.float32)[:3]
    return [
        {
            "episode": i,
            "env_steps": int(end),
            "distance": float(np.linalg.norm(state[begin:end, :3] - hand, axis=1).min()),
        }
        for i, (begin, end) in enumerate(zip(starts[:-1], starts[1:], strict=True))
    ]


def curves_from_metrics(metrics: list[dict]) -> dict:
    """A run's curves from its metrics.jsonl: evaluation (dense return, success), training
    episodes (success of the episodes ended since the last log line: the stochastic policy at
    the goal's placement, whatever reward the arm trains on) and FB's training metrics."""
    return {
        "curve": [
            {
                "env_steps": int(m["step"]),
                "return": m["eval/dense_return"],
                "success": m["eval/success"],
            }
            for m in metrics
            if "eval/dense_return" in m
        ],
        "train_episodes": [
            {"env_steps": int(m["step"]), "success": m["episode/success"]}
            for m in metrics
            if "episode/success" in m
        ],
        "fb_training": [
            {
                "env_steps": int(m["step"]),
                **{
                    k: m[k]
                    for k in m
                    if k.startswith(("train/extra/fb", "train/extra/share", "train/extra_reward"))
                },
            }
            for m in metrics
            if "train/extra/fb_td" in m
        ],
    }


def _band(values: np.ndarray) -> dict:
    """Mean, min and max over seeds (axis 0) of [seeds, points]."""
    return {
        "mean": values.mean(0).tolist(),
        "min": values.min(0).tolist(),
        "max": values.max(0).tolist(),
    }


def summarise(records: list[dict], arms: list[str], steps: int) -> dict:
    """Per arm, over seeds: eval return and success per evaluation; training-episode success
    per log point; its mean over the second half of training per seed (the number the bar is
    read from: ~40 episodes a run, where the final eval is 3 deterministic ones); and for FB
    arms the correlation of Q with closeness to the goal (mean of the last five log points);
    the closest approach of the hand to the goal per training episode (a running mean over 8
    episodes) and its mean over the last quarter of the episodes."""
    out = {}
    for arm in arms:
        runs = [r for r in records if r["arm"] == arm]
        if not runs:
            continue
        entry = {
            "env_steps": [p["env_steps"] for p in runs[0]["curve"]],
            "seeds": [r["seed"] for r in runs],
        }
        for key in ("return", "success"):
            entry[key] = _band(np.array([[p[key] for p in r["curve"]] for r in runs]))
        train = [r.get("train_episodes", []) for r in runs]
        if all(train):
            entry["train_steps"] = [p["env_steps"] for p in train[0]]
            entry["train_success"] = _band(np.array([[p["success"] for p in t] for t in train]))
            entry["train_success_second_half"] = [
                float(np.mean([p["success"] for p in t if p["env_steps"] > steps / 2]))
                for t in train
            ]
        closest = [r.get("closest_approach", []) for r in runs]
        if all(closest):
            n = min(len(c) for c in closest)
            window = 8
            smooth = np.array(
                [
                    np.convolve([p["distance"] for p in c[:n]], np.ones(window) / window, "valid")
                    for c in closest
                ]
            )
            entry["closest_steps"] = [p["env_steps"] for p in closest[0][window - 1 : n]]
            entry["closest"] = _band(smooth)
            entry["closest_last_quarter"] = [
                float(np.mean([p["distance"] for p in c[n - n // 4 : n]])) for c in closest
            ]
        corr = [
            [
                m["train/extra/fb_q_goal_corr"]
                for m in r["fb_training"]
                if "train/extra/fb_q_goal_corr" in m
            ]
            for r in runs
        ]
        if all(corr):
            entry["fb_q_goal_corr_final"] = [float(np.mean(c[-5:])) for c in corr]
        out[arm] = entry
    return out


def _mean_range(values: list[float], digits: int = 2) -> str:
    return f"{np.mean(values):.{digits}f} [{min(values):.{digits}f}, {max(values):.{digits}f}]"


def markdown(summary: dict) -> str:
    lines = [
        "| arm | seeds | final eval return | final eval success | training-episode "
        "success, 2nd half | closest approach (m), last quarter | FB Q–goal correlation "
        "(end) |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm, s in summary.items():
        r, c = s["return"], s["success"]
        train = s.get("train_success_second_half")
        corr = s.get("fb_q_goal_corr_final")
        closest = s.get("closest_last_quarter")
        lines.append(
            f"| {arm} | {len(s['seeds'])} | {r['mean'][-1]:.0f} [{r['min'][-1]:.0f}, "
            f"{r['max'][-1]:.0f}] | {c['mean'][-1]:.2f} | "
            f"{_mean_range(train) if train else '–'} | "
            f"{_mean_range(closest, 3) if closest else '–'} | "
            f"{_mean_range(corr) if corr else '–'} |"
        )
    return "\n".join(lines) + (
        "\n\nValues: mean [min, max] over seeds. Training-episode "
        "success: the stochastic policy's episodes at the goal's "
        "placement, solved at any step. Closest approach: the "
        "least distance of the hand to its goal-frame position in an "
        "episode (reach succeeds below 0.05 m)."
    )


def plot(summary: dict, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(21, 4.5))
    for index, (arm, s) in enumerate(summary.items()):
        color = f"C{index}"
        panels = [(axes[0], s["env_steps"], s["return"]), (axes[1], s["env_steps"], s["success"])]
        if "train_success" in s:
            panels.append((axes[2], s["train_steps"], s["train_success"]))
        if "closest" in s:
            panels.append((axes[3], s["closest_steps"], s["closest"]))
        for ax, steps, band in panels:
            ax.plot(steps, band["mean"], marker="o", markersize=3, label=arm, color=color)
            ax.fill_between(steps, band["min"], band["max"], alpha=0.15, color=color)
    axes[0].set_ylabel("eval return (dense env reward)")
    axes[1].set_ylabel("eval success rate (deterministic policy)")
    axes[2].set_ylabel("training-episode success rate (per log interval)")
    axes[3].set_ylabel("closest approach to the goal (m, 8-episode mean)")
    axes[3].axhline(0.05, color="grey", ls=":", lw=1)
    for ax in axes:
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
    axes[2].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    args = parse_args(argv)
    runs_dir = os.path.join(args.out_dir, "runs")
    plan = [
        (arm, seed, os.path.join(runs_dir, f"{arm}_seed{seed}.json"))
        for arm in args.arms
        for seed in args.seeds
    ]
    if args.run_one:
        arm, seed = args.run_one.rsplit(":", 1)
        out = next(p for a, s, p in plan if a == arm and s == int(seed))
        run_arm(args, arm, int(seed), args.goal_file, out)
        return {}
    from genreward_jax.atomic import atomic_write
    from genreward_jax.metrics_log import read_metrics
    from genreward_jax.trainer import TrainerConfig, updates_due

    updates = updates_due(
        TrainerConfig(
            logdir=args.out_dir,
            batch_size=args.batch_size,
            batch_length=args.batch_length,
            train_ratio=args.train_ratio,
            prefill=args.prefill,
        ),
        args.steps,
    )
    print(
        f"{len(plan)} runs ({len(args.arms)} arms x {len(args.seeds)} seeds), {args.steps} env "
        f"steps and {updates} updates each, {args.jobs} at a time, on {args.task}"
    )
    for arm, seed, out in plan:
        state = "done" if os.path.exists(out) else "to run"
        print(f"  {arm:16s} seed {seed}: {ARMS[arm]} -> {out} ({state})")
    if args.dry_run:
        return {"plan": [p[:2] for p in plan]}
    os.makedirs(runs_dir, exist_ok=True)
    goal_file = args.goal_file or default_goal(args)
    pending = [(a, s, p) for a, s, p in plan if not os.path.exists(p)]
    running: list[tuple[subprocess.Popen, str]] = []
    forwarded = [
        a
        for a in (argv if argv is not None else sys.argv[1:])
        if not a.startswith(("--goal_file", "--jobs", "--dry_run"))
    ]
    start = time.perf_counter()
    while pending or running:
        while pending and len(running) < args.jobs:
            arm, seed, out = pending.pop(0)
            log = open(out.removesuffix(".json") + ".log", "w")
            cmd = [
                sys.executable,
                "-m",
                "bench.learn_rewards",
                *forwarded,
                f"--goal_file={goal_file}",
                f"--run_one={arm}:{seed}",
            ]
            running.append(
                (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), f"{arm} seed {seed}")
            )
            print(
                f"[{(time.perf_counter() - start) / 60:5.1f} min] started {arm} seed {seed}",
                flush=True,
            )
        time.sleep(2)
        for proc, name in list(running):
            if proc.poll() is not None:
                running.remove((proc, name))
                status = "done" if proc.returncode == 0 else f"FAILED ({proc.returncode})"
                print(
                    f"[{(time.perf_counter() - start) / 60:5.1f} min] {name}: {status}", flush=True
                )
    records = [json.load(open(p)) for _, _, p in plan if os.path.exists(p)]
    for record, (_, _, path) in zip(
        records, [q for q in plan if os.path.exists(q[2])], strict=True
    ):
        if "train_episodes" not in record:  # a run recorded before these curves existed
            record.update(curves_from_metrics(read_metrics(path.removesuffix(".json"))))
        if "closest_approach" not in record:
            from genreward_jax.goals import load_goal

            record["closest_approach"] = closest_approach(
                path.removesuffix(".json"), load_goal(goal_file).states[-1]
            )
    summary = summarise(records, args.arms, args.steps)
    table = markdown(summary)
    print(table)
    report = {
        "args": {k: v for k, v in vars(args).items() if k != "run_one"},
        "goal_file": goal_file,
        "summary": summary,
        "runs": records,
    }
    atomic_write(
        os.path.join(args.out_dir, "learn_rewards.json"), json.dumps(report, indent=1) + "\n"
    )
    atomic_write(os.path.join(args.out_dir, "learn_rewards.md"), table + "\n")
    png = os.path.join(args.out_dir, "learn_rewards.png")
    plot(
        summary,
        png,
        f"{args.task}: DreamerV3 {args.preset} (state) per reward arm, "
        f"mean and range over {len(args.seeds)} seeds",
    )
    print(f"wrote {args.out_dir}/learn_rewards.{{json,md,png}}")
    return report


if __name__ == "__main__":
    main()
