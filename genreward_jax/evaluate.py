"""Evaluate a run's checkpoint: `python -m genreward_jax.evaluate --logdir=RUN [--step=N]`.

Works on any finished or interrupted run: the agent (and, for GenReward runs, the FB state its
checkpoint holds) is rebuilt from the run's own `flags.cfg`, the checkpoint is restored without
its replay, and `--episodes` episodes run on fresh eval envs, seeded as the run's in-training
evaluations (or from `--seed`). Writes `<logdir>/evaluations/step_<N>.json` and, with
`--video`, an mp4 of the first episode, beside the goal video when the run had one.

    .venv/bin/python -m genreward_jax.evaluate --logdir=runs/quickstart --episodes=10 --video
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Any

import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logdir", required=True, help="a run directory of genreward_jax.main")
    parser.add_argument(
        "--step", type=int, default=None, help="checkpoint step (env steps; default: the latest)"
    )
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--video", action="store_true", help="write an mp4 of the first episode")
    parser.add_argument(
        "--eval_mode",
        default=None,
        choices=("mean", "sample"),
        help="eval actions (default: the run's --eval_mode)",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="eval env seed (default: the run's own eval seeds)"
    )
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"--episodes must be >= 1, got {args.episodes}")
    return args


class EvaluationError(RuntimeError):
    """The run directory cannot be evaluated; the message says why in one line."""


def _run_flags(logdir: str) -> Any:
    """The run's flags, parsed into the training CLI's flag values."""
    from genreward_jax import main as train_main
    from genreward_jax.run_flags import FLAGS_FILE

    path = os.path.join(logdir, FLAGS_FILE)
    if not os.path.isfile(path):
        raise EvaluationError(
            f"{path} not found: --logdir must be a run directory written by genreward_jax.main"
        )
    train_main.FLAGS.unparse_flags()
    train_main.FLAGS(["evaluate", f"--flagfile={path}"])
    return train_main


def evaluate_run(args: argparse.Namespace) -> dict[str, Any]:
    import jax

    from genreward_jax import atomic, evaluation, media
    from genreward_jax.checkpoint import Checkpointer
    from genreward_jax.dreamer import Agent
    from genreward_jax.envs import ACT_DIM, EnvBatch
    from genreward_jax.envs import flags as env_flags
    from genreward_jax.envs.flags import derive_seed
    from genreward_jax.rewards import plugins
    from genreward_jax.trainer import observation_spec

    logdir = os.path.abspath(args.logdir)
    train_main = _run_flags(logdir)
    flag_values = train_main.FLAGS
    checkpointer = Checkpointer(os.path.join(logdir, "checkpoints"), keep=1_000_000)
    try:
        steps = checkpointer.all_steps()
        if not steps:
            raise EvaluationError(f"no checkpoint in {logdir}/checkpoints (the run saved none yet)")
        step = max(steps) if args.step is None else args.step
        if step not in steps:
            raise EvaluationError(
                f"no checkpoint at step {step} in {logdir}/checkpoints; there are {sorted(steps)}"
            )
        trainer_config = train_main.trainer_config_from_flags()
        agent_config = train_main.agent_config_from_flags()
        env_configs = env_flags.env_configs_from_flags(stream=train_main.TRAIN_STREAM)
        eval_configs = env_flags.env_configs_from_flags(stream=train_main.EVAL_STREAM, num_envs=1)
        reward_config = plugins.reward_config(
            flag_values, agent_config.compute_dtype, flag_values.time_limit
        )
        setup = plugins.build_reward(
            reward_config,
            plugins.BuildContext(
                flag_values, agent_config, trainer_config, env_configs, eval_configs
            ),
        )
        render = "image" in trainer_config.obs_keys or args.video
        eval_configs = [
            dataclasses.replace(
                c,
                render=render,
                seed=c.seed
                if args.seed is None
                else derive_seed(args.seed, 0, train_main.EVAL_STREAM),
            )
            for c in setup.eval_configs
        ]
        extra = setup.extra

        probe = EnvBatch(eval_configs)
        try:
            obs = probe.reset()
            act_dim = int(getattr(probe, "act_dim", ACT_DIM))
        finally:
            probe.close()
        obs_spec = observation_spec(obs, trainer_config.obs_keys)
        agent = Agent(agent_config, obs_spec, act_dim, extra=extra)
        template = {
            "agent": agent.init(jax.random.key(0)),
            "carry": agent.initial_carry(len(env_configs)),
        }
        state, meta = checkpointer.restore_state(step, template)
    finally:
        checkpointer.close()

    train_state = state["agent"]
    mode = "eval" if (args.eval_mode or trainer_config.eval_mode) == "mean" else "train"
    key = (
        _eval_key(trainer_config.seed, logdir, step, meta)
        if args.seed is None
        else (jax.random.key(args.seed))
    )
    policy_keys = (*trainer_config.obs_keys, "is_first")

    def policy(obs, carry, index):
        action, carry = agent.policy(
            train_state,
            carry,
            {k: obs[k] for k in policy_keys},
            jax.random.fold_in(key, index),
            mode,
        )
        return np.asarray(action, np.float32), carry

    result = evaluation.evaluate(
        EnvBatch,
        eval_configs,
        policy,
        agent.initial_carry(1),
        args.episodes,
        "image" if args.video else None,
    )
    report = {
        "logdir": logdir,
        "step": step,
        "updates": meta.get("updates"),
        "episodes": args.episodes,
        "eval_mode": args.eval_mode or trainer_config.eval_mode,
        "seeds": [c.seed for c in eval_configs],
        **result.metrics(),
        "returns": result.returns,
        "dense_returns": result.dense_returns,
        "successes": [bool(s) for s in result.successes],
    }
    out_dir = os.path.join(logdir, "evaluations")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"step_{step:09d}.json")
    atomic.atomic_write(path, json.dumps(report, indent=1) + "\n")
    report["json"] = path
    if result.frames is not None:
        frames = result.frames
        goal_frames = None if setup.model is None else setup.model.goal_frames
        if goal_frames is not None:
            frames = media.beside_goal(frames, goal_frames)
        report["video"] = os.path.join(out_dir, f"step_{step:09d}.mp4")
        media.write_video(report["video"], np.repeat(np.repeat(frames, 2, 1), 2, 2))
    return report


def _eval_key(seed: int, logdir: str, step: int, meta: dict) -> Any:
    """The key the run's own evaluation at `step` used (the trainer's eval key folded with the
    evaluation's index), so that re-evaluating a checkpoint reproduces that evaluation; the next
    index when the run did not evaluate at this step."""
    import jax

    from genreward_jax.metrics_log import read_metrics
    from genreward_jax.trainer import run_keys

    eval_key = run_keys(seed)[3]
    evaluated_here = any(r["step"] == step and "eval/return" in r for r in read_metrics(logdir))
    return jax.random.fold_in(eval_key, int(meta["evals"]) - int(evaluated_here))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from genreward_jax.checkpoint import CheckpointMismatchError

    args = parse_args(argv)
    try:
        report = evaluate_run(args)
    except (EvaluationError, CheckpointMismatchError) as error:
        sys.exit(f"error: {error}")
    print(
        f"step {report['step']}: return {report['eval/return']:.1f} "
        f"± {report['eval/return_std']:.1f}, dense return {report['eval/dense_return']:.1f}, "
        f"success {report['eval/success']:.2f} over {args.episodes} episodes -> "
        f"{report['json']}" + (f", {report['video']}" if "video" in report else "")
    )
    return report


if __name__ == "__main__":
    main()
