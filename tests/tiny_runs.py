"""The small trainer config, FB extra loss and signalling env batch the end-to-end loop tests
share: state observations, no evaluation, video or periodic checkpoints unless a test asks."""

from __future__ import annotations

import os
import signal

from genreward_jax.envs import ACT_DIM, EnvBatch
from genreward_jax.rewards import fb
from genreward_jax.rewards.fb_extra_loss import FBExtraLoss, FBRewardSpec
from genreward_jax.trainer import TrainerConfig


def tiny_trainer_config(logdir, **overrides) -> TrainerConfig:
    values = dict(
        logdir=str(logdir),
        steps=80,
        train_ratio=16.0,
        batch_size=2,
        batch_length=8,
        replay_capacity=1000,
        prefill=20,
        obs_keys=("state",),
        eval_every=10**6,
        eval_episodes=1,
        video=False,
        checkpoint_every=10**6,
        keep_checkpoints=1,
        log_every=40,
        seed=0,
    )
    values.update(overrides)
    return TrainerConfig(**values)


def tiny_fb_extra(goal_feature, beta: float, state_dim: int) -> FBExtraLoss:
    """FB with an 8-d embedding and 16 hidden units that never freezes."""
    spec = FBRewardSpec(
        state_dim=state_dim,
        action_dim=ACT_DIM,
        goal_feature=goal_feature,
        beta=beta,
        freeze_after_updates=10**6,
    )
    return FBExtraLoss(fb.FBConfig(z_dim=8, hidden=16), spec)


class SigtermAfter:
    """The real EnvBatch; sends SIGTERM to this process after `steps` steps of the batch."""

    act_dim = 4

    def __init__(self, configs, steps):
        self._envs = EnvBatch(configs)
        self._left = steps

    def reset(self, *args, **kwargs):
        return self._envs.reset(*args, **kwargs)

    def step(self, actions, *args, **kwargs):
        obs = self._envs.step(actions, *args, **kwargs)
        self._left -= 1
        if self._left == 0:
            os.kill(os.getpid(), signal.SIGTERM)
        return obs

    def close(self):
        self._envs.close()


def signal_first_batch(steps):
    """make_envs for Trainer: the first batch made (the training one) sends SIGTERM after
    `steps` steps; later ones (eval) are plain."""
    made = []

    def make(configs):
        made.append(configs)
        return SigtermAfter(configs, steps) if len(made) == 1 else EnvBatch(configs)

    return make
