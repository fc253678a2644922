"""Video-level reward: how much the agent's recent clip looks like the goal video to the VAE.

Windows. With interval I, window k of an episode holds the I + 1 observations with episode step
indices (k − 1)·I … k·I (the reset observation has index 0), so consecutive windows share their
boundary frame and the first window starts at the same scene the goal video starts from. K frames
are sampled from the window exactly as the goal's frames were sampled from the goal video
(``genreward_jax.goals.uniform_indices``); with I = 128 and K = 17 they are every 8th frame.
The reward — the cosine similarity between the flattened VAE latent mean of those frames and the
goal latent — is written to the step that closes the window (index k·I) and is zero elsewhere.

Only the K sampled steps of a window need the larger frame: ``VideoWindows.needs_frame`` tells
the env loop where to render it.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from genreward_jax.goals import uniform_indices


def cosine_to_goal(latents: jax.Array, goal_latent: jax.Array) -> jax.Array:
    """Cosine similarity of flattened latents [N, ...] with one goal latent [...] -> [N]."""
    flat = latents.reshape(latents.shape[0], -1).astype(jnp.float32)
    goal = goal_latent.reshape(-1).astype(jnp.float32)
    dots = flat @ goal
    norms = jnp.linalg.norm(flat, axis=-1) * jnp.linalg.norm(goal)
    return dots / jnp.maximum(norms, 1e-12)


def make_video_reward_fn(encode_mean: Callable[[jax.Array], jax.Array],
                         goal_latent: np.ndarray) -> Callable[[jax.Array], jax.Array]:
    """Jitted clips -> reward: uint8 frames [N, K, R, R, 3] -> cosine to the goal [N].

    ``encode_mean`` maps uint8 clips to latent means [N, T', h, w, C] (e.g. our Flax VAE); it must
    be the encoder that produced ``goal_latent`` [T', h, w, C], or the cosine is meaningless."""
    goal = jnp.asarray(goal_latent, jnp.float32)

    @jax.jit
    def reward(clips: jax.Array) -> jax.Array:
        latents = encode_mean(clips)
        if latents.shape[1:] != goal.shape:
            raise ValueError(f'agent latent shape {latents.shape[1:]} differs from the goal '
                             f'latent {goal.shape}: frame count or resolution mismatch')
        return cosine_to_goal(latents, goal)

    return reward


class VideoWindows:
    """Collects each env's sampled frames over its current window (numpy; runs beside the envs).

    ``add`` takes the step's episode indices and the larger frames (only the rows where
    ``needs_frame`` was true are read) and returns the env rows whose window closed at this step,
    with their clips ready to encode."""

    def __init__(self, num_envs: int, interval: int, num_samples: int, resolution: int):
        if interval < 1:
            raise ValueError(f'video interval must be positive, got {interval}')
        self.interval = interval
        self.offsets = uniform_indices(interval + 1, num_samples)         # [K] in [0, I]
        self.slot_of_offset = {int(o): i for i, o in enumerate(self.offsets)}
        self.clips = np.zeros((num_envs, num_samples, resolution, resolution, 3), np.uint8)

    def needs_frame(self, episode_step: np.ndarray) -> np.ndarray:
        """Whether the observation at each env's episode step index [N] is a sampled frame."""
        return np.isin(self._offset(episode_step), self.offsets)

    def closes_window(self, episode_step: np.ndarray) -> np.ndarray:
        """Whether each env's step [N] closes a window (its reward goes there)."""
        return (episode_step > 0) & (episode_step % self.interval == 0)

    def add(self, episode_step: np.ndarray, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stores sampled frames [N, R, R, 3] of envs at episode step indices [N].

        Returns (env indices whose window closed at this step [M], their clips [M, K, R, R, 3]).
        A closing frame is also the first frame of the next window, so it is kept for that."""
        offsets = self._offset(episode_step)
        for env, offset in enumerate(offsets):
            slot = self.slot_of_offset.get(int(offset))
            if slot is not None:
                self.clips[env, slot] = frames[env]
        closed = np.flatnonzero(self.closes_window(episode_step))
        clips = self.clips[closed].copy()
        self.clips[closed, 0] = frames[closed]
        return closed, clips

    def _offset(self, episode_step: np.ndarray) -> np.ndarray:
        """Position inside the window: 0 … I, where a closing step counts as I (not 0)."""
        step = np.asarray(episode_step)
        offset = step % self.interval
        return np.where((offset == 0) & (step > 0), self.interval, offset)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {'clips': self.clips.copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        if state['clips'].shape != self.clips.shape:
            raise ValueError(f"video window shape {state['clips'].shape} does not match "
                             f'{self.clips.shape}')
        self.clips[...] = state['clips']
