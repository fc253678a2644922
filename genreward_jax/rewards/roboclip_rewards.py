"""The online side of the RoboCLIP baseline: one S3D score per episode, at its last step.

Per env step, ``RoboCLIPRewards.process`` keeps the frames RoboCLIP's video uses (``roboclip.py``:
every ``stride``-th frame after a step, centre-cropped; rendered at ``render_size``, an extra
render when that differs from the policy's frames) and, on the step that ends an episode, embeds
the episode's video with our Flax S3D tower. It adds to the observation batch:
  * ``r_env`` [N]: the environment reward;
  * ``r_roboclip`` [N]: ⟨S3D(video), target⟩ on an episode's last step, else 0;
  * ``reward`` [N]: ``r_env·[env reward on] + term``, the term being ``w·r_roboclip`` (``paper``:
    the release trains on it alone, w = 1, --noenv_reward) or ``w·σ_env·L·(r − μ)/σ`` on the last
    step (``calibrated``, ``scaling.py``; one value per L-step episode, so a per-step spread of
    w·σ_env, as for GenReward's video term).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from genreward_jax.encoders import load_s3d_video, weights_hash
from genreward_jax.goals import GoalFileError, encoder_folder
from genreward_jax.rewards.baseline import GoalFileBaseline, check_run_settings
from genreward_jax.rewards.goal_rewards import GoalMismatchError, load_goals
from genreward_jax.rewards.roboclip import (
    RELEASE_RENDER,
    centre_crop,
    episode_clip,
    kept_step,
)
from genreward_jax.rewards.scaling import env_spread, generated_term


@dataclasses.dataclass(frozen=True)
class RoboCLIPConfig:
    """RoboCLIP's settings; crop, stride and pixel range come from the goal (as its target was
    made)."""

    goal_file: str
    weight: float = 0.5
    env_reward: bool = True
    reward_scaling: str = "calibrated"
    render_size: int = RELEASE_RENDER
    episode_length: int = 256
    encoder_dtype: str = "float32"

    def __post_init__(self):
        check_run_settings(self.goal_file, self.reward_scaling, self.encoder_dtype)
        if self.render_size < 2:
            raise ValueError(f"--roboclip_render_size must be at least 2, got {self.render_size}")


class RoboCLIPRewards(GoalFileBaseline):
    """RoboCLIP's reward model (``interface.RewardModel``) for one training run."""

    raw_key = "r_roboclip"

    def __init__(self, config: RoboCLIPConfig, num_envs: int, image_size: int):
        super().__init__(load_goals(config.goal_file), num_envs)
        self.config = config
        goal_path = self.goal_path
        if self.goal.roboclip_target is None:
            raise GoalFileError(
                f"{goal_path}: no RoboCLIP section (S3D target); remake the goal "
                "with preprocessing/make_goals.py (pretrained models: "
                "--s3d_weights and --s3d_dict)"
            )
        entry = self.goal.provenance["roboclip"]
        folder = encoder_folder(goal_path, self.goal, "roboclip")
        if weights_hash(folder) != entry["hash"]:
            raise GoalMismatchError(
                f"{goal_path}: the S3D weights in {folder} are not the ones "
                "its RoboCLIP target was made with (weights hash differs)"
            )
        tower = load_s3d_video(folder, jnp.dtype(config.encoder_dtype))
        target = jnp.asarray(self.goal.roboclip_target)
        self._embed_and_score = jax.jit(
            lambda video: tower.apply(tower.params, video[None])[0] @ target
        )
        self.stride, self.unit_pixels = int(entry["stride"]), entry["pixel_range"] == "[0, 1]"
        self.crop = min(int(entry["crop"]), config.render_size)
        self.needs_extra_render = config.render_size != image_size
        capacity = config.episode_length // self.stride + 2
        self.frames = np.zeros((num_envs, capacity, self.crop, self.crop, 3), np.uint8)
        self.kept = np.zeros(num_envs, np.int64)
        self.episode_step = np.zeros(num_envs, np.int64)
        self._scores: list[float] = []

    def score(self, kept: np.ndarray) -> float:
        """⟨S3D(video), target⟩ of an episode's kept frames [K, H, W, 3] uint8 (centre-cropped
        here if they are larger than the crop, then ``roboclip.episode_clip``)."""
        clip = episode_clip(centre_crop(kept, self.crop), self.unit_pixels)
        return float(self._embed_and_score(jnp.asarray(clip)))

    # ------------------------------------------------------------------ RewardModel
    @property
    def extra_size(self) -> int | None:
        return self.config.render_size if self.needs_extra_render else None

    def render_mask(self, next_is_first: np.ndarray | None = None) -> np.ndarray:
        upcoming = self.episode_step + 1
        if next_is_first is not None:
            upcoming = np.where(next_is_first, 0, upcoming)
        return kept_step(upcoming, self.stride) & self.needs_extra_render

    def scale(self) -> float:
        """w (paper) or w·σ_env·L (calibrated): the factor on the raw or standardised score."""
        if self.config.reward_scaling == "paper":
            return self.config.weight
        spread = env_spread(self.env_stats, self.config.env_reward)
        return self.config.weight * spread * self.config.episode_length

    def process(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Adds r_env, r_roboclip and the combined reward to a batch of observations."""
        cfg = self.config
        first = np.asarray(obs["is_first"], bool)
        last = np.asarray(obs["is_last"], bool)
        self.episode_step = np.where(first, 0, self.episode_step + 1)
        self.kept[first] = 0
        self.track_goal_index(obs, first)
        keep = kept_step(self.episode_step, self.stride)
        if keep.any():
            frames = obs["extra_image"] if self.needs_extra_render else obs["image"]
            for env in np.flatnonzero(keep):
                if self.kept[env] < len(self.frames[env]):
                    self.frames[env, self.kept[env]] = centre_crop(frames[env], self.crop)
                    self.kept[env] += 1
        r_env = np.asarray(obs["reward"], np.float32)
        self.env_stats.update(r_env[~first])
        ended = last & ~first
        raw = np.zeros_like(r_env)
        for env in np.flatnonzero(ended):
            raw[env] = self.score(self.frames[env, : self.kept[env]])
            self._scores.append(float(raw[env]))
        term = np.zeros_like(r_env)
        if ended.any():
            term[ended] = generated_term(
                raw[ended], self.raw_stats, cfg.reward_scaling, cfg.weight, self.scale()
            )
        reward = (r_env if cfg.env_reward else np.zeros_like(r_env)) + term
        return {**obs, "r_env": r_env, "r_roboclip": raw, "reward": reward.astype(np.float32)}

    def metrics(self) -> dict[str, float]:
        """Episode scores since the last call, and the scale applied to them."""
        out = {
            "rewards/env_scale": float(self.env_stats.std),
            "rewards/roboclip_scale": float(self.scale()),
        }
        if self._scores:
            out.update(
                {
                    "rewards/roboclip": float(np.mean(self._scores)),
                    "rewards/roboclip_std": float(np.std(self._scores)),
                    "rewards/roboclip_episodes": float(len(self._scores)),
                }
            )
        self._scores = []
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        return {
            **super().state_dict(),
            "frames": self.frames.copy(),
            "kept": self.kept.copy(),
            "episode_step": self.episode_step.copy(),
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        super().load_state_dict(state)
        self.frames = np.asarray(state["frames"], np.uint8).copy()
        self.kept = np.asarray(state["kept"], np.int64).copy()
        self.episode_step = np.asarray(state["episode_step"], np.int64).copy()
