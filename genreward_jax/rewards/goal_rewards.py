"""The online side of a goal file: checks it, then turns env steps into GenReward's replay entries.

At start-up the goal is refused (``GoalMismatchError``, naming what differs) unless the online stage
will encode agent frames exactly as the goal was encoded: the encoder weights' hashes match the
goal's provenance, our Flax VAE re-encodes the stored goal frames to the stored latent, and our Flax
DINOv3 reproduces the stored keyframe feature.

Per env step, ``GoalRewards.process`` adds to the observation batch:
  * ``dino`` [N, D]: the DINOv3 feature of the policy image (B's input in the FB loss);
  * ``r_env`` [N]: the environment reward (dense or sparse, as the env was configured);
  * ``r_video`` [N]: the video reward at the steps that close a window (see ``video.py``), else 0;
  * ``reward`` [N]: ``r_env·[env reward on] + α·r_video``, the reward stored in replay. The FB
    term ``β·r_fb`` is added inside the train step (``fb_agent.py``), because F and B change while
    they train.

The FB goal feature is DINOv3 of the keyframe resized to the policy image size, so the goal and the
replay frames B sees share one resolution and preprocessing.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

from genreward_jax.encoders import (
    LoadedEncoder,
    load_dinov3,
    load_vae_encoder,
    preprocess_images,
    video_to_vae_input,
    weights_hash,
)
from genreward_jax.goals import (
    GoalFile,
    GoalFileError,
    check_goal_matches,
    encoder_folder,
    load_goal,
)
from genreward_jax.rewards.video import VideoWindows, make_video_reward_fn

LATENT_ATOL = 1e-3
FEATURE_ATOL = 1e-3


class GoalMismatchError(GoalFileError):
    """The goal was encoded differently from how the online stage encodes the agent's frames."""


@dataclasses.dataclass(frozen=True)
class RewardConfig:
    """Which reward terms are on and how they are weighted (defaults: the authors' release)."""

    goal_file: str
    alpha: float = 0.01
    video_reward: bool = True
    env_reward: bool = True
    video_interval: int = 128
    encoder_dtype: str = 'float32'

    def __post_init__(self):
        if self.video_interval < 1:
            raise ValueError(f'--video_interval must be positive, got {self.video_interval}')
        if self.encoder_dtype not in ('float32', 'bfloat16'):
            raise ValueError(f"--encoder_dtype must be 'float32' or 'bfloat16', "
                             f'got {self.encoder_dtype!r}')
        if not os.path.isfile(self.goal_file):
            raise FileNotFoundError(f'--goal_file {self.goal_file!r} does not exist; make one '
                                    'with preprocessing/make_goals.py')


def _check_close(name: str, ours: np.ndarray, stored: np.ndarray, atol: float) -> None:
    if ours.shape != stored.shape:
        raise GoalMismatchError(f'{name}: our encoder gives shape {ours.shape}, the goal stores '
                                f'{stored.shape}')
    err = float(np.max(np.abs(ours - stored)))
    if not err <= atol:
        raise GoalMismatchError(f'{name}: re-encoding the goal differs from the stored values by '
                                f'{err:.3g} (tolerance {atol}); the goal was made with other '
                                'weights, resolution or preprocessing')


class GoalRewards:
    """Encoders, goal targets and per-env video windows for one training run."""

    def __init__(self, config: RewardConfig, num_envs: int, image_size: int):
        self.config = config
        self.goal: GoalFile = load_goal(config.goal_file)
        goal = self.goal
        vae_dir = encoder_folder(config.goal_file, goal, 'vae')
        dino_dir = encoder_folder(config.goal_file, goal, 'dinov3')
        check_goal_matches(goal, vae_hash=weights_hash(vae_dir),
                           dinov3_hash=weights_hash(dino_dir))
        vae, dino = load_vae_encoder(vae_dir), load_dinov3(dino_dir)
        self._verify_encoders(vae, dino)
        # Same float32 parameters; only the compute dtype of the run may differ.
        dtype = jnp.dtype(config.encoder_dtype)
        vae = vae._replace(module=vae.module.clone(dtype=dtype))
        dino = dino._replace(module=dino.module.clone(dtype=dtype))
        self.video_reward_fn = make_video_reward_fn(
            lambda clips: vae.apply(vae.params, video_to_vae_input(clips))[0], goal.latent_mean)
        self._dino = jax.jit(lambda images: dino.apply(dino.params,
                                                        preprocess_images(images))['pooled'])
        self.feature_dim = int(goal.keyframe_feature.shape[0])
        keyframe = jax.image.resize(jnp.asarray(goal.keyframe, jnp.float32),
                                    (image_size, image_size, 3), 'linear', antialias=True)
        self.goal_feature = np.asarray(self._dino(jnp.round(keyframe)[None])[0])
        self.windows = VideoWindows(num_envs, config.video_interval, goal.num_sampled_frames,
                                    goal.resolution)
        self.episode_step = np.zeros(num_envs, np.int64)
        self.needs_extra_render = config.video_reward and goal.resolution != image_size
        self._video_rewards: list[float] = []

    @property
    def extra_size(self) -> int | None:
        """Size of the env's extra render for the video reward; None when the policy frames
        already have the goal's resolution (then they are encoded directly)."""
        return self.goal.resolution if self.needs_extra_render else None

    def _verify_encoders(self, vae: LoadedEncoder, dino: LoadedEncoder) -> None:
        """Re-encodes the goal in float32 at highest precision and compares with the file."""
        goal = self.goal
        with jax.default_matmul_precision('highest'):
            clip = goal.frames[goal.frame_indices][None]
            latent = jax.jit(vae.apply)(vae.params, video_to_vae_input(clip))[0][0]
            _check_close('VAE latent', np.asarray(latent), goal.latent_mean, LATENT_ATOL)
            feature = jax.jit(dino.apply)(dino.params,
                                          preprocess_images(goal.keyframe[None]))['pooled'][0]
            _check_close('DINOv3 keyframe feature', np.asarray(feature), goal.keyframe_feature,
                         FEATURE_ATOL)

    def render_mask(self, next_is_first: np.ndarray | None = None) -> np.ndarray:
        """Which envs must render the large frame on the coming step [N] (step index + 1, or 0
        for an env whose next observation starts an episode)."""
        upcoming = self.episode_step + 1
        if next_is_first is not None:
            upcoming = np.where(next_is_first, 0, upcoming)
        return self.windows.needs_frame(upcoming) & self.needs_extra_render

    def process(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Adds dino, r_env, r_video and the combined reward to a batch of observations."""
        cfg = self.config
        self.episode_step = np.where(obs['is_first'], 0, self.episode_step + 1)
        r_env = np.asarray(obs['reward'], np.float32)
        r_video = np.zeros_like(r_env)
        if cfg.video_reward:
            frames = obs.get('extra_image') if self.needs_extra_render else obs['image']
            if frames is None:
                needed = self.windows.needs_frame(self.episode_step)
                if needed.any():
                    raise RuntimeError('the video reward needs the env to render extra_image at '
                                       f'{self.extra_size}px on the sampled steps')
                frames = np.zeros((len(r_env), *self.windows.clips.shape[2:]), np.uint8)
            closed, clips = self.windows.add(self.episode_step, frames)
            if len(closed):
                r_video[closed] = np.asarray(self.video_reward_fn(clips))
                self._video_rewards.extend(r_video[closed].tolist())
        reward = (r_env if cfg.env_reward else np.zeros_like(r_env)) + cfg.alpha * r_video
        dino = np.asarray(self._dino(obs['image']), np.float32)
        return {**obs, 'r_env': r_env, 'r_video': r_video, 'reward': reward, 'dino': dino}

    def metrics(self) -> dict[str, float]:
        """Mean video reward of the windows closed since the last call (for the log)."""
        if not self._video_rewards:
            return {}
        out = {'rewards/video': float(np.mean(self._video_rewards)),
               'rewards/video_windows': float(len(self._video_rewards))}
        self._video_rewards = []
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        return {**self.windows.state_dict(), 'episode_step': self.episode_step.copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.windows.load_state_dict({'clips': state['clips']})
        self.episode_step = np.asarray(state['episode_step'], np.int64).copy()
