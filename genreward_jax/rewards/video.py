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

Variants (``VIDEO_VARIANTS``; chosen by AUC in ``bench/reward_quality.py``, see the README):
  * ``paper`` (Eq. 5 as published): every window against the whole goal video's latent. Any two
    clips of one scene have cosine ~0.98-0.99 with flattened, uncentred latents, and window 2
    (mid-task) is compared with the goal from its start.
  * ``progress``: window k, covering steps (k-1)·I … k·I, is compared with the K frames sampled
    from the stretch of the goal video those steps reach when the goal spans D env steps (D: the
    goal's own pace, or the episode length L; after D the goal's last frame).
  * ``centred``: both latents minus the latent of a still clip of their own start scene (the
    episode's first frame, the goal's first frame, repeated K times), so the cosine compares what
    *changed* rather than the static scene both share.
  * ``progress_centred``: both.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from genreward_jax.goals import uniform_indices

f32 = jnp.float32


def cosine_to_goal(latents: jax.Array, goal_latent: jax.Array) -> jax.Array:
    """The video reward (Eq. 5): cosine similarity of flattened latents [N, ...] with one goal
    latent [...] or with one goal per row [N, ...] -> [N]."""
    flat = latents.reshape(latents.shape[0], -1).astype(f32)
    goal = jnp.broadcast_to(goal_latent, latents.shape).reshape(flat.shape).astype(f32)
    norms = jnp.linalg.norm(flat, axis=-1) * jnp.linalg.norm(goal, axis=-1)
    return (flat * goal).sum(-1) / jnp.maximum(norms, 1e-12)


VIDEO_VARIANTS = ("paper", "progress", "centred", "progress_centred")
Encoder = Callable[[jax.Array], jax.Array]


def make_video_reward_fn(encode_mean: Encoder, goal_latent: np.ndarray) -> Callable:
    """Jitted clips -> reward (the paper's variant): uint8 frames [N, K, R, R, 3] -> cosine to
    the goal [N].

    ``encode_mean`` maps uint8 clips to latent means [N, T', h, w, C] (e.g. our Flax VAE); it must
    be the encoder that produced ``goal_latent`` [T', h, w, C], or the cosine is meaningless."""
    reward = VideoReward(encode_mean, np.asarray(goal_latent)[None], centred=False)
    return lambda clips: reward(clips, np.zeros(len(clips), np.int32))


def still_clips(first_frames: jax.Array, num_samples: int) -> jax.Array:
    """A clip that never moves: each first frame [N, R, R, 3] repeated -> [N, K, R, R, 3]."""
    return jnp.repeat(first_frames[:, None], num_samples, axis=1)


def segment_indices(num_goal_frames: int, num_samples: int, start: float, end: float) -> np.ndarray:
    """K goal-frame indices spread uniformly over the fraction [start, end] of the goal video
    (indices may repeat when the segment holds fewer than K frames)."""
    last = num_goal_frames - 1
    return np.round(np.linspace(start * last, end * last, num_samples)).astype(np.int64)


def video_targets(
    encode_mean: Encoder,
    goal_frames: np.ndarray,
    goal_latent: np.ndarray,
    variant: str,
    interval: int,
    episode_length: int,
    num_samples: int,
    goal_steps: int | None = None,
) -> np.ndarray:
    """Target latent of each window of an episode, [W, T', h, w, C] with W = L // I windows.

    Progress variants map episode step τ to goal time τ / D with D = ``goal_steps`` (None: the
    episode length L, so the goal video spans the episode; the scripted expert's own pace is
    D = N − 1), holding the goal's last frame after D.

    goal_frames [N, R, R, 3] uint8 and goal_latent [T', h, w, C] come from the goal file (the
    stored latent is what ``paper`` compares with; the other variants re-encode goal frames with
    the same, verified encoder). Centred variants subtract the still clip of goal frame 0."""
    if variant not in VIDEO_VARIANTS:
        raise ValueError(f"video reward variant must be one of {VIDEO_VARIANTS}, got {variant!r}")
    windows = max(episode_length // interval, 1)
    pace = goal_steps or episode_length
    # One compiled encoder call for all windows: run eagerly, the encoder's ops compiled one by
    # one (hundreds of small XLA compiles, ~10 s for the tiny test VAE).
    encode_mean = jax.jit(encode_mean)
    if variant.startswith("progress"):
        clips = np.stack(
            [
                goal_frames[
                    segment_indices(
                        len(goal_frames),
                        num_samples,
                        min((k - 1) * interval / pace, 1.0),
                        min(k * interval / pace, 1.0),
                    )
                ]
                for k in range(1, windows + 1)
            ]
        )
        targets = np.asarray(encode_mean(jnp.asarray(clips)), np.float32)
    else:
        targets = np.repeat(np.asarray(goal_latent, np.float32)[None], windows, axis=0)
    if variant.endswith("centred"):
        still = still_clips(jnp.asarray(goal_frames[:1]), num_samples)
        targets = targets - np.asarray(encode_mean(still), np.float32)
    return targets


class VideoReward:
    """Jitted cosine between agent clips and per-window targets.

    ``targets`` [X, T', h, w, C] (from ``video_targets``; X = windows × goals for a goal bank).
    ``__call__(clips [M, K, R, R, 3] uint8, target_index [M] int, first_frames [M, R, R, 3])``:
    the centred variants also encode the still clip of each episode's first frame and subtract
    it, in the same encoder call (one batch of 2M clips)."""

    def __init__(self, encode_mean: Encoder, targets: np.ndarray, centred: bool):
        self.targets = jnp.asarray(targets, f32)
        self.centred = centred
        self._fn = jax.jit(self._reward)
        self._encode = encode_mean

    def _reward(
        self, clips: jax.Array, target_index: jax.Array, first_frames: jax.Array | None
    ) -> jax.Array:
        if self.centred:
            both = self._encode(
                jnp.concatenate([clips, still_clips(first_frames, clips.shape[1])], 0)
            )
            latents = both[: len(clips)] - both[len(clips) :]
        else:
            latents = self._encode(clips)
        if latents.shape[1:] != self.targets.shape[1:]:
            raise ValueError(
                f"agent latent shape {latents.shape[1:]} differs from the goal "
                f"latent {self.targets.shape[1:]}: frame count or resolution "
                "mismatch"
            )
        return cosine_to_goal(latents, self.targets[target_index])

    def __call__(self, clips, target_index, first_frames=None) -> jax.Array:
        if self.centred and first_frames is None:
            raise ValueError("a centred video reward needs each episode's first frame")
        return self._fn(
            jnp.asarray(clips),
            jnp.asarray(target_index, jnp.int32),
            None if first_frames is None else jnp.asarray(first_frames),
        )


class VideoWindows:
    """Collects each env's sampled frames over its current window (numpy; runs beside the envs).

    ``add`` takes the step's episode indices and the larger frames (only the rows where
    ``needs_frame`` was true are read) and returns the env rows whose window closed at this step,
    with their clips ready to encode."""

    def __init__(self, num_envs: int, interval: int, num_samples: int, resolution: int):
        if interval < 1:
            raise ValueError(f"video interval must be positive, got {interval}")
        self.interval = interval
        self.offsets = uniform_indices(interval + 1, num_samples)  # [K] in [0, I]
        self.slot_of_offset = {int(o): i for i, o in enumerate(self.offsets)}
        self.clips = np.zeros((num_envs, num_samples, resolution, resolution, 3), np.uint8)
        self.first_frames = np.zeros((num_envs, resolution, resolution, 3), np.uint8)

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
        starts = np.asarray(episode_step) == 0
        self.first_frames[starts] = frames[starts]
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

    def window_index(self, episode_step: np.ndarray) -> np.ndarray:
        """1-based index k of the window each step [N] closes (meaningful where it closes)."""
        return np.asarray(episode_step) // self.interval

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"clips": self.clips.copy(), "first_frames": self.first_frames.copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        if state["clips"].shape != self.clips.shape:
            raise ValueError(
                f"video window shape {state['clips'].shape} does not match {self.clips.shape}"
            )
        self.clips[...] = state["clips"]
        if "first_frames" in state:
            self.first_frames[...] = state["first_frames"]
