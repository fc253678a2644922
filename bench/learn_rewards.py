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
the dense reward, whatever the arm trains on). Each run is a subprocess writing its own JSON under
--out_dir/runs, so rerunning the same command skips finished runs. Writes curves (mean and range
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
    'dense': ('dense', None),
    'sparse': ('sparse', None),
    'sparse+fb_state': ('sparse', 'state'),
    'fb_state': (None, 'state'),
    'none': (None, None),
    'fb_dino': (None, 'dino'),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0] + ' Budget with the defaults: 12 runs of 5k env '
        'steps and 1,000 updates, about 45 min on a 2-core CPU (2 runs at a time).')
    parser.add_argument('--arms', default=','.join(ARMS))
    parser.add_argument('--seeds', default='0,1')
    parser.add_argument('--task', default='reach-v3')
    parser.add_argument('--goal_file', default=None,
                        help='a scripted goal of --task (default: made with tiny models)')
    parser.add_argument('--goal_frame', default='last', choices=('keyframe', 'last'),
                        help='FB goal: the last goal frame (the solved scene) by default, since '
                        'the tiny goal\'s keyframe is picked by random-weight CLIP')
    parser.add_argument('--steps', type=int, default=5000)
    parser.add_argument('--prefill', type=int, default=1000)
    parser.add_argument('--train_ratio', type=float, default=64.0)
    parser.add_argument('--batch_size', type=int, default=16)
    parser.add_argument('--batch_length', type=int, default=16)
    parser.add_argument('--preset', default='1m')
    parser.add_argument('--lr', type=float, default=2e-4)
    parser.add_argument('--time_limit', type=int, default=128)
    parser.add_argument('--action_repeat', type=int, default=2)
    parser.add_argument('--sparse_interval', type=int, default=64)
    parser.add_argument('--beta', type=float, default=0.5)
    parser.add_argument('--fb_lr', type=float, default=1e-3,
                        help='above the paper\'s 1e-4: these runs make ~1000 updates, not 500k')
    parser.add_argument('--fb_z_dim', type=int, default=32)
    parser.add_argument('--fb_hidden', type=int, default=256)
    parser.add_argument('--eval_every', type=int, default=1000)
    parser.add_argument('--eval_episodes', type=int, default=5)
    parser.add_argument('--jobs', type=int, default=2, help='runs at a time')
    parser.add_argument('--out_dir', default='bench/results/learn_rewards')
    parser.add_argument('--dry_run', action='store_true')
    parser.add_argument('--run_one', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.arms = [a for a in args.arms.split(',') if a]
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown:
        parser.error(f'unknown arms {unknown}; choose from {list(ARMS)}')
    args.seeds = [int(s) for s in args.seeds.split(',') if s]
    return args


def default_goal(args) -> str:
    """A tiny-model scripted goal of the task (it records the placement and the states)."""
    path = os.path.join(args.out_dir, 'goal', 'goal.npz')
    if not os.path.exists(path):
        from preprocessing.goal_builder import GoalConfig, build_goal
        from preprocessing.models import ModelSpec

        build_goal(GoalConfig(task=args.task, goal_source='scripted',
                              out_dir=os.path.dirname(path), models=ModelSpec(mode='tiny'),
                              resolution=64, num_sampled_frames=17, seed=0,
                              max_steps=args.time_limit * args.action_repeat))
    return path


def run_arm(args, arm: str, seed: int, goal_file: str, out: str) -> dict:
    """One training run of an arm; returns and writes its eval curve."""
    from genreward_jax.dreamer import Agent, preset
    from genreward_jax.envs import ACT_DIM, EnvConfig
    from genreward_jax.envs.flags import derive_seed
    from genreward_jax.logging_utils import atomic_write_text, read_metrics
    from genreward_jax.rewards import fb
    from genreward_jax.rewards.fb_agent import FBExtraLoss, FBRewardSpec
    from genreward_jax.rewards.goal_rewards import GoalRewards, RewardConfig
    from genreward_jax.trainer import Trainer, TrainerConfig

    env_mode, space = ARMS[arm]
    rewards = GoalRewards(RewardConfig(goal_file=goal_file, video_reward=False,
                                       env_reward=env_mode is not None,
                                       reward_scaling='calibrated', goal_space=space or 'state',
                                       goal_frame=args.goal_frame,
                                       episode_length=args.time_limit), num_envs=1,
                          image_size=64)
    base = dict(time_limit=args.time_limit, action_repeat=args.action_repeat,
                placements=rewards.placements, render=False)
    train = [EnvConfig(args.task, seed=derive_seed(seed, 0, 0),
                       sparse_interval=args.sparse_interval, reward_mode=env_mode or 'dense',
                       **base)]
    evals = [EnvConfig(args.task, seed=derive_seed(seed, 0, 1), reward_mode='dense', **base)]
    agent_config = preset(args.preset, compute_dtype='float32', lr=args.lr, warmup=100)
    extra = None
    if space is not None:
        spec = FBRewardSpec(state_dim=agent_config.feat_size, action_dim=ACT_DIM,
                            goal_feature=rewards.goal_features, beta=args.beta,
                            freeze_after_updates=10**9, env_reward=env_mode is not None,
                            goal_space=space)
        extra = FBExtraLoss(fb.FBConfig(z_dim=args.fb_z_dim, hidden=args.fb_hidden,
                                        lr=args.fb_lr), spec)
    logdir = out.removesuffix('.json')
    config = TrainerConfig(
        logdir=logdir, steps=args.steps, train_ratio=args.train_ratio,
        batch_size=args.batch_size, batch_length=args.batch_length,
        replay_capacity=args.steps + 1000, prefill=args.prefill, obs_keys=('state',),
        eval_every=args.eval_every, eval_episodes=args.eval_episodes, video=False,
        checkpoint_every=args.steps, keep_checkpoints=1, log_every=500, seed=seed)
    start = time.perf_counter()
    result = Trainer(config, lambda spec, act_dim: Agent(agent_config, spec, act_dim, extra),
                     train, evals, goal_rewards=rewards).run()
    metrics = read_metrics(logdir)
    curve = [{'env_steps': int(m['step']), 'return': m['eval/dense_return'],
              'success': m['eval/success']} for m in metrics if 'eval/dense_return' in m]
    train_fb = [{'env_steps': int(m['step']), **{k: m[k] for k in m if k.startswith(
        ('train/extra/fb', 'train/extra/share', 'train/extra_reward'))}}
        for m in metrics if 'train/extra/fb_td' in m]
    record = {'arm': arm, 'seed': seed, 'curve': curve, 'fb_training': train_fb,
              'updates': result['updates'], 'seconds': time.perf_counter() - start}
    atomic_write_text(out, json.dumps(record, indent=1) + '\n')
    return record


def summarise(records: list[dict], arms: list[str]) -> dict:
    """Per arm: eval steps, mean/min/max return and success over seeds."""
    out = {}
    for arm in arms:
        runs = [r for r in records if r['arm'] == arm]
        if not runs:
            continue
        steps = [p['env_steps'] for p in runs[0]['curve']]
        table = {}
        for key in ('return', 'success'):
            values = np.array([[p[key] for p in r['curve']] for r in runs])
            table[key] = {'mean': values.mean(0).tolist(), 'min': values.min(0).tolist(),
                          'max': values.max(0).tolist()}
        out[arm] = {'env_steps': steps, 'seeds': [r['seed'] for r in runs], **table}
    return out


def markdown(summary: dict) -> str:
    lines = ['| arm | seeds | final return (mean [min, max]) | final success | mean success '
             'over evals |', '|---|---|---|---|---|']
    for arm, s in summary.items():
        r, c = s['return'], s['success']
        lines.append(f"| {arm} | {len(s['seeds'])} | {r['mean'][-1]:.0f} [{r['min'][-1]:.0f}, "
                     f"{r['max'][-1]:.0f}] | {c['mean'][-1]:.2f} | {np.mean(c['mean']):.2f} |")
    return '\n'.join(lines)


def plot(summary: dict, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for arm, s in summary.items():
        for ax, key in zip(axes, ('return', 'success'), strict=True):
            line, = ax.plot(s['env_steps'], s[key]['mean'], marker='o', label=arm)
            ax.fill_between(s['env_steps'], s[key]['min'], s[key]['max'], alpha=0.15,
                            color=line.get_color())
    axes[0].set_ylabel('eval return (dense env reward)')
    axes[1].set_ylabel('eval success rate')
    for ax in axes:
        ax.set_xlabel('env steps')
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    args = parse_args(argv)
    runs_dir = os.path.join(args.out_dir, 'runs')
    plan = [(arm, seed, os.path.join(runs_dir, f'{arm}_seed{seed}.json'))
            for arm in args.arms for seed in args.seeds]
    if args.run_one:
        arm, seed = args.run_one.rsplit(':', 1)
        out = next(p for a, s, p in plan if a == arm and s == int(seed))
        run_arm(args, arm, int(seed), args.goal_file, out)
        return {}
    updates = int((args.steps - args.prefill) * args.train_ratio
                  // (args.batch_size * args.batch_length))
    print(f'{len(plan)} runs ({len(args.arms)} arms x {len(args.seeds)} seeds), {args.steps} env '
          f'steps and {updates} updates each, {args.jobs} at a time, on {args.task}')
    for arm, seed, out in plan:
        state = 'done' if os.path.exists(out) else 'to run'
        print(f'  {arm:16s} seed {seed}: {ARMS[arm]} -> {out} ({state})')
    if args.dry_run:
        return {'plan': [p[:2] for p in plan]}
    os.makedirs(runs_dir, exist_ok=True)
    goal_file = args.goal_file or default_goal(args)
    pending = [(a, s, p) for a, s, p in plan if not os.path.exists(p)]
    running: list[tuple[subprocess.Popen, str]] = []
    forwarded = [a for a in (argv if argv is not None else sys.argv[1:])
                 if not a.startswith(('--goal_file', '--jobs', '--dry_run'))]
    start = time.perf_counter()
    while pending or running:
        while pending and len(running) < args.jobs:
            arm, seed, out = pending.pop(0)
            log = open(out.removesuffix('.json') + '.log', 'w')
            cmd = [sys.executable, '-m', 'bench.learn_rewards', *forwarded,
                   f'--goal_file={goal_file}', f'--run_one={arm}:{seed}']
            running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT),
                            f'{arm} seed {seed}'))
            print(f'[{(time.perf_counter() - start) / 60:5.1f} min] started {arm} seed {seed}',
                  flush=True)
        time.sleep(2)
        for proc, name in list(running):
            if proc.poll() is not None:
                running.remove((proc, name))
                status = 'done' if proc.returncode == 0 else f'FAILED ({proc.returncode})'
                print(f'[{(time.perf_counter() - start) / 60:5.1f} min] {name}: {status}',
                      flush=True)
    records = [json.load(open(p)) for _, _, p in plan if os.path.exists(p)]
    summary = summarise(records, args.arms)
    table = markdown(summary)
    print(table)
    report = {'args': {k: v for k, v in vars(args).items() if k != 'run_one'},
              'goal_file': goal_file, 'summary': summary, 'runs': records}
    with open(os.path.join(args.out_dir, 'learn_rewards.json'), 'w') as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(args.out_dir, 'learn_rewards.md'), 'w') as f:
        f.write(table + '\n')
    png = os.path.join(args.out_dir, 'learn_rewards.png')
    plot(summary, png, f'{args.task}: DreamerV3 {args.preset} (state) per reward arm, '
                       f'mean and range over {len(args.seeds)} seeds')
    print(f'wrote {args.out_dir}/learn_rewards.{{json,md,png}}')
    return report


if __name__ == '__main__':
    main()
