"""The small trainer config and FB extra loss the end-to-end loop tests share: state
observations, no evaluation, video or periodic checkpoints unless a test asks for them."""

from __future__ import annotations

from genreward_jax.envs import ACT_DIM
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
