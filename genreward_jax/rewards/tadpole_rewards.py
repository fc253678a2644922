"""The online side of the TADPoLe baseline: a Stable Diffusion reward for every frame, in Flax.

Per env step, ``TADPoLeRewards`` scores each env's frame (rendered at ``render_size``, the
release's 448, an extra render when it differs from the policy's frames) with ``tadpole.py``'s
reward: our Flax VAE encoder and UNet, one noise level per episode (drawn when it starts), fresh
posterior and noise draws every step, the prompt and empty-prompt embeddings from the goal file.
Its raw score ``r_tadpole`` (plus ``success_bonus`` × success, the release's Meta-World sparse
term, 0 by default) is combined with the env reward as ``baseline.FrameRewardBaseline`` says
(``paper``: the release's own reward, trained on alone with w = 1, --noenv_reward and
--tadpole_success_bonus=2; ``calibrated``: w is its per-step spread against the env reward's).

The draws come from a JAX key kept in the checkpointed state, so a resumed run scores the same
frames with the same noise. At start-up the goal is refused unless the Stable Diffusion folder's
UNet and VAE hash as recorded and its scheduler predicts ε.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from genreward_jax.encoders import load_sd_unet, load_sd_vae_encoder, weights_hash
from genreward_jax.encoders.sd_vae import sample_latent
from genreward_jax.goals import GoalFile, GoalFileError, encoder_folder
from genreward_jax.rewards import tadpole
from genreward_jax.rewards.baseline import FrameRewardBaseline, check_run_settings
from genreward_jax.rewards.goal_rewards import GoalMismatchError, load_goals

SCHEDULER_CONFIG = os.path.join("scheduler", "scheduler_config.json")


@dataclasses.dataclass(frozen=True)
class TADPoLeConfig:
    """TADPoLe's settings (defaults: the release's Meta-World values, our calibrated weight)."""

    goal_file: str
    weight: float = 0.5
    env_reward: bool = True
    reward_scaling: str = "calibrated"
    noise_base: int = tadpole.RELEASE_NOISE_BASE
    noise_range: int = tadpole.RELEASE_NOISE_RANGE
    align_scale: float = tadpole.RELEASE_ALIGN_SCALE
    recon_scale: float = tadpole.RELEASE_RECON_SCALE
    render_size: int = tadpole.RELEASE_RENDER
    pixel_range: str = "unit"
    success_bonus: float = 0.0
    seed: int = 0
    encoder_dtype: str = "float32"

    def __post_init__(self):
        check_run_settings(self.goal_file, self.reward_scaling, self.encoder_dtype)
        if self.noise_range < 1 or self.noise_base < 0:
            raise ValueError(
                f"--tadpole_noise_base must be >= 0 and --tadpole_noise_range >= 1, got "
                f"{self.noise_base} and {self.noise_range}"
            )
        if self.pixel_range not in tadpole.PIXEL_RANGES:
            raise ValueError(
                f"--tadpole_pixel_range must be one of {tadpole.PIXEL_RANGES}, got "
                f"{self.pixel_range!r}"
            )
        if self.render_size < 2:
            raise ValueError(f"--tadpole_render_size must be at least 2, got {self.render_size}")


def sd_folder(goal_path: str, goal: GoalFile) -> str:
    """The Stable Diffusion folder a goal's TADPoLe embeddings were made with, hash-checked."""
    if goal.tadpole_context is None:
        raise GoalFileError(
            f"{goal_path}: no TADPoLe section (prompt embeddings); remake the goal with "
            "preprocessing/make_goals.py (pretrained models: --sd_model)"
        )
    entry = goal.provenance["tadpole"]
    folder = encoder_folder(goal_path, goal, "tadpole")
    for part in ("unet", "vae"):
        if weights_hash(os.path.join(folder, part)) != entry[f"{part}_hash"]:
            raise GoalMismatchError(
                f"{goal_path}: the {part} in {folder} is not the one its TADPoLe embeddings "
                "were made with (weights hash differs)"
            )
    return folder


def tadpole_reward_fn(goal_path: str, goal: GoalFile, config: TADPoLeConfig) -> Callable:
    """The jitted TADPoLe reward of a goal, (uint8 frames [N, H, W, 3], noise levels t [N] int,
    key) -> {'reward', 'alignment', 'reconstruction'} each [N]. The schedule and noise range
    are checked before the (large) UNet is read."""
    folder = sd_folder(goal_path, goal)
    with open(os.path.join(folder, SCHEDULER_CONFIG)) as f:
        scheduler = json.load(f)
    tadpole.check_epsilon_model(scheduler, os.path.join(folder, SCHEDULER_CONFIG))
    alpha_bars = tadpole.alphas_cumprod(scheduler)
    if not config.noise_base + config.noise_range <= len(alpha_bars):
        raise ValueError(
            f"noise levels [{config.noise_base}, {config.noise_base + config.noise_range}) exceed "
            f"the model's {len(alpha_bars)} timesteps"
        )
    dtype = jnp.dtype(config.encoder_dtype)
    vae = load_sd_vae_encoder(os.path.join(folder, "vae"), dtype)
    unet = load_sd_unet(os.path.join(folder, "unet"), dtype)
    resolution = unet.config.sample_size * vae.config.downscale
    context = jnp.asarray(goal.tadpole_context)  # [2, L, D]: empty prompt, task prompt
    alphas = jnp.asarray(alpha_bars)
    scaling = vae.config.scaling_factor

    @jax.jit
    def reward(frames: jax.Array, t: jax.Array, key: jax.Array) -> dict[str, jax.Array]:
        n = frames.shape[0]
        posterior_key, noise_key = jax.random.split(key)
        pixels = tadpole.frames_to_pixels(frames, resolution, config.pixel_range)
        latent = sample_latent(posterior_key, *vae.apply(vae.params, pixels), scaling)
        noise = jax.random.normal(noise_key, latent.shape, latent.dtype)
        noisy = tadpole.add_noise(latent, noise, alphas[t])
        conditions = jnp.repeat(context, n, axis=0)  # [2N, L, D]: N empty, then N prompt
        eps = unet.apply(unet.params, jnp.concatenate([noisy, noisy]), jnp.tile(t, 2), conditions)
        return tadpole.tadpole_terms(
            eps[n:], eps[:n], noise, config.align_scale, config.recon_scale
        )

    return reward


class TADPoLeRewards(FrameRewardBaseline):
    """TADPoLe's reward model (``interface.RewardModel``) for one training run."""

    raw_key = "r_tadpole"

    def __init__(self, config: TADPoLeConfig, num_envs: int, image_size: int):
        goals = load_goals(config.goal_file)
        goal_path, goal = goals[0]
        self._reward = tadpole_reward_fn(goal_path, goal, config)
        super().__init__(goals, num_envs, config, config.render_size, image_size)
        self.key = jax.random.key(config.seed)
        self.noise_level = np.full(num_envs, config.noise_base, np.int32)
        self._parts: dict[str, list[np.ndarray]] = {"alignment": [], "reconstruction": []}

    def raw_rewards(self, frames: np.ndarray, obs: dict[str, np.ndarray]) -> np.ndarray:
        """TADPoLe's reward of each frame (a new episode draws its noise level first), plus the
        success bonus."""
        first = np.asarray(obs["is_first"], bool)
        self.key, level_key, step_key = jax.random.split(self.key, 3)
        if first.any():
            drawn = tadpole.draw_noise_levels(
                level_key, self.num_envs, self.config.noise_base, self.config.noise_range
            )
            self.noise_level = np.where(first, np.asarray(drawn), self.noise_level)
        out = self._reward(jnp.asarray(frames), jnp.asarray(self.noise_level), step_key)
        for name, values in self._parts.items():
            values.append(np.asarray(out[name])[~first])
        raw = np.asarray(out["reward"], np.float32)
        if self.config.success_bonus:
            raw = raw + self.config.success_bonus * np.asarray(obs["success"], np.float32)
        return raw

    def metrics(self) -> dict[str, float]:
        out = super().metrics()
        for name, values in self._parts.items():
            if values:
                out[f"rewards/tadpole_{name}"] = float(np.concatenate(values).mean())
            values.clear()
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        return {
            **super().state_dict(),
            "key": np.asarray(jax.random.key_data(self.key)),
            "noise_level": self.noise_level.copy(),
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        super().load_state_dict(state)
        self.key = jax.random.wrap_key_data(jnp.asarray(state["key"]))
        self.noise_level = np.asarray(state["noise_level"], np.int32).copy()
