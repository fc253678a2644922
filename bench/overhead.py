"""Cost of GenReward's rewards: the full loop against plain DreamerV3, same config, same run.

Both loops train the same agent preset on the same task for the same number of env steps; the
GenReward loop adds the goal's DINOv3 features for every observation, the video reward at window
ends and FB inside the train step. Time is split by wrapping the env batch, the encoders and the
agent's jitted calls with timers (each result is waited for, so the split is honest but adds a
sync per call).

    .venv/bin/python -m bench.overhead --goal_file=goals/quickstart/goal.npz
Prints a table and writes JSON (default bench/results/overhead.json).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict

import jax

from genreward_jax.atomic import atomic_write_json  # noqa: E402
from genreward_jax.dreamer import Agent, preset
from genreward_jax.envs import ACT_DIM, EnvBatch, EnvConfig
from genreward_jax.rewards import fb
from genreward_jax.rewards.fb_extra_loss import FBExtraLoss, FBRewardSpec
from genreward_jax.rewards.goal_rewards import GoalRewards, RewardConfig
from genreward_jax.trainer import Trainer, TrainerConfig


class Timers:
    """Seconds per named part, summed over calls."""

    def __init__(self):
        self.seconds = defaultdict(float)

    def wrap(self, name, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            out = jax.block_until_ready(fn(*args, **kwargs))
            self.seconds[name] += time.perf_counter() - start
            return out

        return timed


class TimedEnvs:
    def __init__(self, configs, timers):
        self._envs = EnvBatch(configs)
        self.act_dim = self._envs.act_dim
        self.reset = timers.wrap("env (physics + render)", self._envs.reset)
        self.step = timers.wrap("env (physics + render)", self._envs.step)

    def close(self):
        self._envs.close()


def run(args, with_goal: bool) -> dict:
    timers = Timers()
    envs = [
        EnvConfig(
            args.task,
            seed=args.seed + i,
            time_limit=args.time_limit,
            action_repeat=args.action_repeat,
        )
        for i in range(args.num_envs)
    ]
    evals = [EnvConfig(args.task, seed=10_000, time_limit=args.time_limit)]
    agent_config = preset(args.preset, compute_dtype="float32")
    rewards, extra = None, None
    if with_goal:
        rewards = GoalRewards(
            RewardConfig(
                goal_file=args.goal_file,
                video_interval=args.video_interval,
                video_variant="progress",
                reward_scaling="calibrated",
                episode_length=args.time_limit,
            ),
            num_envs=args.num_envs,
            image_size=64,
        )
        rewards._dino = timers.wrap("DINOv3 features", rewards._dino)
        rewards.video_reward_fn = timers.wrap("VAE video reward", rewards.video_reward_fn)
        extra = FBExtraLoss(
            fb.FBConfig(z_dim=args.fb_z_dim, hidden=args.fb_hidden),
            FBRewardSpec(
                state_dim=agent_config.feat_size,
                action_dim=ACT_DIM,
                goal_feature=rewards.goal_feature,
                beta=0.5,
                freeze_after_updates=10**9,
            ),
        )

    def agent_factory(obs_spec, act_dim):
        agent = Agent(agent_config, obs_spec, act_dim, extra=extra)
        agent.train = timers.wrap("train step", agent.train)
        agent.policy = timers.wrap("policy step", agent.policy)
        return agent

    with tempfile.TemporaryDirectory() as logdir:
        config = TrainerConfig(
            logdir=logdir,
            steps=args.steps,
            train_ratio=args.train_ratio,
            batch_size=16,
            batch_length=args.batch_length,
            replay_capacity=100_000,
            prefill=args.prefill,
            obs_keys=(args.obs,),
            eval_every=10**9,
            eval_episodes=1,
            video=False,
            checkpoint_every=10**9,
            log_every=10**9,
            seed=args.seed,
        )
        trainer = Trainer(
            config,
            agent_factory,
            envs,
            evals,
            stdout=False,
            reward_model=rewards,
            make_envs=lambda c: TimedEnvs(c, timers),
        )
        start = time.perf_counter()
        result = trainer.run()
        wall = time.perf_counter() - start
    return {
        "loop": "GenReward" if with_goal else "DreamerV3",
        "wall_s": wall,
        "env_steps": result["env_steps"],
        "updates": result["updates"],
        "env_steps_per_s": result["env_steps"] / wall,
        "split_s": dict(timers.seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--goal_file", default="goals/quickstart/goal.npz")
    parser.add_argument("--task", default="reach")
    parser.add_argument("--preset", default="1m")
    parser.add_argument(
        "--obs",
        default="state",
        choices=("state", "image"),
        help="agent input; with state, only the GenReward loop renders",
    )
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--prefill", type=int, default=500)
    parser.add_argument("--train_ratio", type=float, default=32.0)
    parser.add_argument("--batch_length", type=int, default=16)
    parser.add_argument("--num_envs", type=int, default=1)
    parser.add_argument("--time_limit", type=int, default=128)
    parser.add_argument("--action_repeat", type=int, default=2)
    parser.add_argument("--video_interval", type=int, default=128)
    parser.add_argument("--fb_z_dim", type=int, default=16)
    parser.add_argument("--fb_hidden", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench/results/overhead.json")
    args = parser.parse_args()
    if not os.path.isfile(args.goal_file):
        raise SystemExit(
            f"{args.goal_file} not found: run preprocessing/make_goals.py "
            "--flagfile=configs/goals_quickstart.cfg first"
        )

    rows = [run(args, with_goal=False), run(args, with_goal=True)]
    base = rows[0]["env_steps_per_s"]
    parts = sorted({p for r in rows for p in r["split_s"]})
    header = " ".join(f"{p:>24}" for p in parts)
    print(f"{'loop':<10} {'env steps/s':>12} {'vs plain':>9} {header}")
    for r in rows:
        split = " ".join(f"{r['split_s'].get(p, 0.0):>23.1f}s" for p in parts)
        print(
            f"{r['loop']:<10} {r['env_steps_per_s']:>12.2f} {r['env_steps_per_s'] / base:>8.0%} "
            f"{split}"
        )
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    record = {
        "args": vars(args),
        "device": str(jax.devices()[0]),
        "rows": rows,
        "ratio_genreward_vs_plain": rows[1]["env_steps_per_s"] / base,
        "loadavg": os.getloadavg(),
    }
    atomic_write_json(args.out, record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
