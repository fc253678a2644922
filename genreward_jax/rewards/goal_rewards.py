"""The online side of a goal file: checks it, then turns env steps into GenReward's replay entries.

At start-up the goal is refused (``GoalMismatchError``, naming what differs) unless the online stage
will encode agent frames exactly as the goal was encoded: the encoder weights' hashes match the
goal's provenance, our Flax VAE re-encodes the stored goal frames to the stored latent, and our Flax
DINOv3 reproduces the stored keyframe feature.

Per env step, ``GoalRewards.process`` adds to the observation batch:
  * ``dino`` [N, D]: the DINOv3 feature of the policy image (B's input in the FB loss);
  * ``r_env`` [N]: the environment reward (dense or sparse, as the env was configured);
  * ``r_video`` [N]: the raw video reward (a cosine) at the steps that close a window (see
    ``video.py`` for the variants), else 0;
  * ``reward`` [N]: ``r_env·[env reward on] + video term``, the reward stored in replay
    (``combination.replay_reward``: Eq. 10 up to its FB term, which the train step adds because F
    and B change while they train).

The video term (``reward_scaling``):
  * ``'paper'``: ``α·r_video``, the release's formula (α = 0.01 on a cosine that varies by
    ~0.01 between behaviours: invisible next to Meta-World's 0-10 per-step reward);
  * ``'calibrated'``: ``α · σ_env · I · (r_video − μ) / σ``, with μ, σ running statistics of the
    raw window values, σ_env the per-step std of the env reward over all steps so far (1 with
    the env reward off, or while it has not varied yet) and I the window length. One value
    arrives per I steps, and a reward head cannot tell from the state when a window closes, so
    it learns E[term | s] ≈ α·σ_env·z per step: α is the term's per-step spread as a fraction of
    the env reward's (logged as ``rewards/video_step_spread_vs_env``).

    Why per step and not per episode: the env return can hardly vary between episodes early in
    training, at a fixed placement or with a sparse reward, and a term scaled to it would vanish
    exactly where a shaping reward has to act (measured: README, "What the generated rewards
    measure").

Goal banks (``--goal_file=<folder>/bank.json`` from ``make_goals.py --placements=N``): the env
reports each episode's placement index (``obs['placement']``) and the episode's video reward
uses the goal of that placement; the FB goal features of all goals are ``goal_features``.

The FB goal feature is DINOv3 of the keyframe resized to the policy image size, so the goal and the
replay frames B sees share one resolution and preprocessing.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from genreward_jax.encoders import (
    latent_mean_fn,
    load_dinov3,
    load_vae_encoder,
    pooled_feature_fn,
    weights_hash,
)
from genreward_jax.goals import (
    GoalFile,
    GoalFileError,
    check_goal_matches,
    encoder_folder,
    load_goal,
)
from genreward_jax.rewards.baseline import check_run_settings, goal_placements
from genreward_jax.rewards.combination import replay_reward
from genreward_jax.rewards.fb_extra_loss import GOAL_SPACES
from genreward_jax.rewards.interface import ReplaySpec
from genreward_jax.rewards.scaling import RunningStats, env_spread, generated_term
from genreward_jax.rewards.video import VIDEO_VARIANTS, VideoReward, VideoWindows, video_targets

f32 = jnp.float32

LATENT_ATOL = 1e-3
FEATURE_ATOL = 1e-3


class GoalMismatchError(GoalFileError):
    """The goal was encoded differently from how the online stage encodes the agent's frames."""


@dataclasses.dataclass(frozen=True)
class RewardConfig:
    """Which reward terms are on and how they are weighted (defaults: the authors' release)."""

    goal_file: str  # a goal .npz, or a bank.json of goals (one per placement)
    alpha: float = 0.01
    video_reward: bool = True
    env_reward: bool = True
    video_interval: int = 128
    encoder_dtype: str = "float32"
    video_variant: str = "paper"
    reward_scaling: str = "paper"
    episode_length: int = 256  # env steps per episode (the progress variants need it)
    video_goal_steps: int | None = None  # progress variants: env steps the goal spans
    # (None: the goal's recorded duration, else the episode length)
    goal_space: str = "dino"  # FB's goal space: 'dino' (the paper) or 'state' (oracle control)
    goal_frame: str = "keyframe"  # FB's goal: the keyframe (Eq. 6) or the goal video's last frame

    def __post_init__(self):
        if self.video_variant not in VIDEO_VARIANTS:
            raise ValueError(
                f"--video_variant must be one of {VIDEO_VARIANTS}, got {self.video_variant!r}"
            )
        if self.goal_frame not in ("keyframe", "last"):
            raise ValueError(f"--goal_frame must be 'keyframe' or 'last', got {self.goal_frame!r}")
        if self.goal_space not in GOAL_SPACES:
            raise ValueError(f"--goal_space must be one of {GOAL_SPACES}, got {self.goal_space!r}")
        if self.video_interval < 1:
            raise ValueError(f"--video_interval must be positive, got {self.video_interval}")
        check_run_settings(self.goal_file, self.reward_scaling, self.encoder_dtype)


def _check_close(name: str, ours: np.ndarray, stored: np.ndarray, atol: float) -> None:
    if ours.shape != stored.shape:
        raise GoalMismatchError(
            f"{name}: our encoder gives shape {ours.shape}, the goal stores {stored.shape}"
        )
    err = float(np.max(np.abs(ours - stored)))
    if not err <= atol:
        raise GoalMismatchError(
            f"{name}: re-encoding the goal differs from the stored values by "
            f"{err:.3g} (tolerance {atol}); the goal was made with other "
            "weights, resolution or preprocessing"
        )


def load_goals(path: str) -> list[tuple[str, GoalFile]]:
    """[(path, goal)] of a goal .npz, or of every goal in a bank.json (paths relative to it)."""
    if not path.endswith(".json"):
        return [(path, load_goal(path))]
    try:
        with open(path) as f:
            bank = json.load(f)
        names = list(bank["goals"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise GoalFileError(
            f"{path}: not a goal bank written by make_goals.py --placements "
            f"({type(error).__name__}: {error})"
        ) from error
    if not names:
        raise GoalFileError(f"{path}: the goal bank lists no goals")
    folder = os.path.dirname(os.path.abspath(path))
    goals = [(os.path.join(folder, n), load_goal(os.path.join(folder, n))) for n in names]
    first = goals[0][1]
    for goal_path, goal in goals[1:]:
        if (
            goal.task,
            goal.frames.shape[1:],
            goal.latent_mean.shape,
            goal.provenance["vae"]["hash"],
            goal.provenance["dinov3"]["hash"],
        ) != (
            first.task,
            first.frames.shape[1:],
            first.latent_mean.shape,
            first.provenance["vae"]["hash"],
            first.provenance["dinov3"]["hash"],
        ):
            raise GoalFileError(
                f"{goal_path}: differs from {goals[0][0]} in task, size or "
                "encoders; a bank needs goals made alike"
            )
    return goals


# Columns of GoalRewards.episode_sums: the terms as they enter the reward.
_ENV, _VIDEO, _FB = range(3)


class GoalRewards:
    """GenReward's reward model (``interface.RewardModel``): encoders, goal targets and per-env
    video windows for one training run."""

    def __init__(self, config: RewardConfig, num_envs: int, image_size: int):
        self.config = config
        self.goals = load_goals(config.goal_file)
        goal_path, self.goal = self.goals[0]
        goal = self.goal
        vae_dir = encoder_folder(goal_path, goal, "vae")
        dino_dir = encoder_folder(goal_path, goal, "dinov3")
        check_goal_matches(goal, vae_hash=weights_hash(vae_dir), dinov3_hash=weights_hash(dino_dir))
        vae, dino = load_vae_encoder(vae_dir), load_dinov3(dino_dir)
        verify_latent, verify_feature = jax.jit(latent_mean_fn(vae)), pooled_feature_fn(dino)
        for _, each in self.goals:  # compiled once for the whole bank
            self._verify_encoders(verify_latent, verify_feature, each)
        # Same float32 parameters; only the compute dtype of the run may differ.
        dtype = jnp.dtype(config.encoder_dtype)
        vae = vae._replace(module=vae.module.clone(dtype=dtype))
        dino = dino._replace(module=dino.module.clone(dtype=dtype))
        encode_mean = latent_mean_fn(vae)

        self.windows_per_episode = max(config.episode_length // config.video_interval, 1)
        self.video_reward_fn: VideoReward | None = None
        if config.video_reward:  # the progress variants encode goal segments: only if used
            targets = [
                video_targets(
                    encode_mean,
                    g.frames,
                    g.latent_mean,
                    config.video_variant,
                    config.video_interval,
                    config.episode_length,
                    g.num_sampled_frames,
                    config.video_goal_steps or g.duration_steps,
                )
                for _, g in self.goals
            ]
            self.video_reward_fn = VideoReward(
                encode_mean,
                np.concatenate(targets),
                centred=config.video_variant.endswith("centred"),
            )
        self._dino = pooled_feature_fn(dino)
        if config.goal_space == "state":
            no_states = [p for p, g in self.goals if g.states is None]
            if no_states:
                raise GoalFileError(
                    f"{no_states[0]}: --goal_space=state needs a scripted goal "
                    "(it stores the expert's states); make one with "
                    "--goal_source=scripted"
                )
            self.goal_features = np.stack(
                [g.states[self._goal_frame_index(g)] for _, g in self.goals]
            )
        else:
            self.goal_features = np.stack(
                [
                    self._policy_size_feature(g.frames[self._goal_frame_index(g)], image_size)
                    for _, g in self.goals
                ]
            )
        self.goal_feature = self.goal_features[0]
        self.windows = VideoWindows(
            num_envs, config.video_interval, goal.num_sampled_frames, goal.resolution
        )
        self.episode_step = np.zeros(num_envs, np.int64)
        self.goal_index = np.zeros(num_envs, np.int64)
        self.needs_extra_render = config.video_reward and goal.resolution != image_size
        self.video_stats, self.env_stats = RunningStats(), RunningStats()
        self.episode_sums = np.zeros((num_envs, 3), np.float64)  # columns _ENV, _VIDEO, _FB
        self._finished: list[np.ndarray] = []
        self._video_rewards: list[float] = []
        self._video_scaled: list[float] = []

    @property
    def needs_frames(self) -> bool:
        """Whether the env must render for these rewards (the video reward or DINOv3 features);
        a state-space FB control without the video reward needs none."""
        return self.config.video_reward or self.config.goal_space == "dino"

    @property
    def goal_key(self) -> str:
        """The replay key B reads: 'dino' (DINOv3 of each frame) or 'state'."""
        return self.config.goal_space

    @property
    def num_goals(self) -> int:
        return len(self.goals)

    @property
    def goal_frames(self) -> np.ndarray:
        """The (first) goal video, shown beside evaluation videos."""
        return self.goal.frames

    def replay_entries(self, obs: dict[str, np.ndarray]) -> ReplaySpec:
        """r_env, r_video, B's input ('dino' or 'state') and, for a bank, 'placement'."""
        key = self.goal_key
        if key not in obs:
            raise ValueError(f"--goal_space={key} needs obs[{key!r}]; 'state' needs --proprio")
        entries = {
            "r_env": ((), np.float32),
            "r_video": ((), np.float32),
            key: (tuple(obs[key].shape[1:]), np.float32),
        }
        if self.num_goals > 1:
            entries["placement"] = ((), np.int32)  # which goal each step's episode uses
        return entries

    @property
    def placements(self) -> tuple[tuple[float, ...], ...]:
        """Each goal's recorded placement, in bank order (for EnvConfig.placements)."""
        return goal_placements(self.goals)

    def _goal_frame_index(self, goal: GoalFile) -> int:
        """Which goal frame FB aims at: the keyframe (Eq. 6), or the last frame (a scripted
        goal's solved scene; for runs whose keyframe was picked by random-weight CLIP)."""
        return goal.keyframe_index if self.config.goal_frame == "keyframe" else len(goal.frames) - 1

    def _policy_size_feature(self, frame: np.ndarray, image_size: int) -> np.ndarray:
        """DINOv3 of a goal frame at the policy's image size (B sees replay frames there)."""
        frame = jax.image.resize(
            jnp.asarray(frame, f32), (image_size, image_size, 3), "linear", antialias=True
        )
        return np.asarray(self._dino(jnp.round(frame)[None])[0])

    @property
    def extra_size(self) -> int | None:
        """Size of the env's extra render for the video reward; None when the policy frames
        already have the goal's resolution (then they are encoded directly)."""
        return self.goal.resolution if self.needs_extra_render else None

    def _verify_encoders(self, latent: Callable, feature: Callable, goal: GoalFile) -> None:
        """Re-encodes the goal in float32 at highest precision (``latent``, ``feature``: the
        jitted float32 encoders) and compares with the file."""
        with jax.default_matmul_precision("highest"):
            clip = goal.frames[goal.frame_indices][None]
            _check_close("VAE latent", np.asarray(latent(clip)[0]), goal.latent_mean, LATENT_ATOL)
            _check_close(
                "DINOv3 keyframe feature",
                np.asarray(feature(goal.keyframe[None])[0]),
                goal.keyframe_feature,
                FEATURE_ATOL,
            )

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
        first = np.asarray(obs["is_first"], bool)
        self.episode_step = np.where(first, 0, self.episode_step + 1)
        if "placement" in obs and self.num_goals > 1:
            self.goal_index = np.where(first, np.asarray(obs["placement"]), self.goal_index)
        r_env = np.asarray(obs["reward"], np.float32)
        r_video = np.zeros_like(r_env)
        video_term = np.zeros_like(r_env)
        if cfg.video_reward:
            frames = obs.get("extra_image") if self.needs_extra_render else obs["image"]
            if frames is None:
                needed = self.windows.needs_frame(self.episode_step)
                if needed.any():
                    raise RuntimeError(
                        "the video reward needs the env to render extra_image at "
                        f"{self.extra_size}px on the sampled steps"
                    )
                frames = np.zeros((len(r_env), *self.windows.clips.shape[2:]), np.uint8)
            closed, clips = self.windows.add(self.episode_step, frames)
            if len(closed):
                window = np.minimum(
                    self.windows.window_index(self.episode_step[closed]) - 1,
                    self.windows_per_episode - 1,
                )
                target = self.goal_index[closed] * self.windows_per_episode + window
                r_video[closed] = np.asarray(
                    self.video_reward_fn(clips, target, self.windows.first_frames[closed])
                )
                video_term[closed] = self._video_term(r_video[closed])
                self._video_rewards.extend(r_video[closed].tolist())
                self._video_scaled.extend(video_term[closed].tolist())
        env_term = r_env if cfg.env_reward else np.zeros_like(r_env)
        self.env_stats.update(r_env[~first])
        reward = replay_reward(env_term, video_term)
        self._track_episodes(
            first,
            np.asarray(obs["is_last"], bool) if "is_last" in obs else np.zeros_like(first),
            env_term,
            video_term,
        )
        out = {**obs, "r_env": r_env, "r_video": r_video, "reward": reward}
        if cfg.goal_space == "dino":
            out["dino"] = np.asarray(self._dino(obs["image"]), np.float32)
        return out

    def env_spread(self) -> float:
        """σ_env of the calibrated terms (``scaling.env_spread``)."""
        return env_spread(self.env_stats, self.config.env_reward)

    def video_scale(self) -> float:
        """α · σ_env · I of the calibrated video term (module docstring)."""
        return self.config.alpha * self.env_spread() * self.config.video_interval

    def _video_term(self, raw: np.ndarray) -> np.ndarray:
        """The video reward as it enters the total reward (module docstring)."""
        cfg = self.config
        return generated_term(
            raw, self.video_stats, cfg.reward_scaling, cfg.alpha, self.video_scale()
        )

    def add_agent_reward(self, reward: np.ndarray) -> None:
        """The FB reward [N] the agent gives this step's (s_t, a_t), for the episode-level
        shares only (the agent computes its own inside the train step)."""
        self.episode_sums[:, _FB] += np.asarray(reward, np.float64)

    def _track_episodes(self, first, last, env_term, video_term) -> None:
        """Per-episode sums of the terms, for the logged shares."""
        self.episode_sums[first] = 0.0
        self.episode_sums[:, _ENV] += env_term
        self.episode_sums[:, _VIDEO] += video_term
        for env in np.flatnonzero(last):
            self._finished.append(self.episode_sums[env].copy())

    def metrics(self) -> dict[str, float]:
        """Raw and scaled video reward of the windows closed since the last call (with its
        per-step spread against the env reward's), and over the episodes finished since then,
        each term's share of the per-episode reward variance and its spread against the env
        return's (for the log)."""
        out = {}
        if self._video_rewards:
            raw = np.asarray(self._video_rewards)
            out.update(
                {
                    "rewards/video": float(raw.mean()),
                    "rewards/video_std": float(raw.std()),
                    "rewards/video_scaled": float(np.mean(self._video_scaled)),
                    "rewards/video_scaled_std": float(np.std(self._video_scaled)),
                    "rewards/video_step_spread_vs_env": float(
                        np.std(self._video_scaled) / self.config.video_interval / self.env_spread()
                    ),
                    "rewards/video_windows": float(len(raw)),
                }
            )
        if len(self._finished) >= 2:
            var = np.stack(self._finished).var(0)
            total = max(var.sum(), 1e-12)
            for name, column in (("env", _ENV), ("video", _VIDEO), ("fb", _FB)):
                out[f"rewards/share_{name}"] = float(var[column] / total)
                if name != "env" and var[_ENV] > 0:
                    out[f"rewards/spread_{name}_vs_env"] = float(np.sqrt(var[column] / var[_ENV]))
            out["rewards/episodes"] = float(len(self._finished))
            self._finished = []
        out["rewards/env_scale"] = float(self.env_stats.std)
        out["rewards/video_scale"] = float(self.video_scale())
        out["rewards/env_spread"] = float(self.env_spread())
        self._video_rewards, self._video_scaled = [], []
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        return {
            **self.windows.state_dict(),
            "episode_step": self.episode_step.copy(),
            "goal_index": self.goal_index.copy(),
            "video_stats": self.video_stats.array(),
            "env_stats": self.env_stats.array(),
            "episode_sums": self.episode_sums.copy(),
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.windows.load_state_dict({k: state[k] for k in ("clips", "first_frames") if k in state})
        self.episode_step = np.asarray(state["episode_step"], np.int64).copy()
        if "goal_index" in state:
            self.goal_index = np.asarray(state["goal_index"], np.int64).copy()
            self.video_stats.load(state["video_stats"])
            self.env_stats.load(state["env_stats"])
            self.episode_sums = np.asarray(state["episode_sums"], np.float64).copy()
