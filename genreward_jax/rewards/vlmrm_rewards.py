"""The online side of the VLM-RM baseline: a CLIP reward for every frame the agent sees.

Per env step, ``VLMRMRewards.process`` embeds each env's frame with our Flax open_clip tower (the
frame rendered at the tower's input size: an extra render when it differs from the policy's) and
adds to the observation batch:
  * ``r_env`` [N]: the environment reward;
  * ``r_vlmrm`` [N]: ``1 − ½‖(x − g)P‖²`` of the frame (``vlmrm.vlmrm_reward``);
  * ``reward`` [N]: ``r_env·[env reward on] + term``, the term being ``w·r_vlmrm`` (``paper``:
    VLM-RM's own reward, as its authors train on it alone with w = 1 and --noenv_reward) or
    ``w·σ_env·(r_vlmrm − μ)/σ`` (``calibrated``, ``scaling.py``: w is the term's per-step spread
    as a fraction of the env reward's).

At start-up the goal is refused unless its CLIP weights folder hashes as recorded and our tower
re-embeds the goal's keyframe as open_clip did (cosine ≥ ``KEYFRAME_MIN_COSINE``: the two resize
kernels differ by about a grey level, a wrong tower or normalisation by far more).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from genreward_jax.encoders import load_clip_vision, weights_hash
from genreward_jax.encoders.clip_vit import preprocess_images
from genreward_jax.goals import GoalFile, GoalFileError, encoder_folder
from genreward_jax.rewards.baseline import GoalFileBaseline, check_run_settings
from genreward_jax.rewards.goal_rewards import GoalMismatchError, load_goals
from genreward_jax.rewards.scaling import RunningStats, env_spread, generated_term
from genreward_jax.rewards.vlmrm import normalise, prompt_embedding, vlmrm_reward

KEYFRAME_MIN_COSINE = 0.99


@dataclasses.dataclass(frozen=True)
class VLMRMConfig:
    """VLM-RM's settings (defaults: λ of the paper, our calibrated weight)."""

    goal_file: str  # a goal .npz with the VLM-RM section, or a bank.json of such goals
    weight: float = 0.5
    lam: float = 0.5
    env_reward: bool = True
    reward_scaling: str = "calibrated"
    encoder_dtype: str = "float32"

    def __post_init__(self):
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"--vlmrm_lambda must be in [0, 1], got {self.lam}")
        check_run_settings(self.goal_file, self.reward_scaling, self.encoder_dtype)


def clip_folder(goal_path: str, goal: GoalFile) -> str:
    """The open_clip folder a goal's VLM-RM embeddings were made with, hash-checked."""
    if not goal.has_vlmrm:
        raise GoalFileError(
            f"{goal_path}: no VLM-RM section (prompt embeddings); remake the goal "
            "with preprocessing/make_goals.py"
        )
    entry = goal.provenance["clip"]
    if not entry.get("hash"):
        raise GoalFileError(
            f"{goal_path}: its CLIP weights ({entry.get('model')} / {entry.get('pretrained')}) "
            "were not read from an open_clip folder, so the online tower cannot load them; "
            "remake the goal with --clip_pretrained=<folder with open_clip_config.json and "
            "open_clip_model.safetensors>"
        )
    folder = encoder_folder(goal_path, goal, "clip")
    if weights_hash(folder) != entry["hash"]:
        raise GoalMismatchError(
            f"{goal_path}: the CLIP weights in {folder} are not the ones its "
            "VLM-RM embeddings were made with (weights hash differs)"
        )
    return folder


def vlmrm_reward_fn(
    goal_path: str, goal: GoalFile, lam: float, encoder_dtype: str = "float32"
) -> tuple[Callable, int]:
    """The jitted VLM-RM reward of a goal, uint8 frames [N, H, W, 3] -> [N], and the tower's
    input size; the goal's CLIP folder and keyframe embedding are checked first."""
    folder = clip_folder(goal_path, goal)
    tower = load_clip_vision(folder)
    _check_keyframe(tower, goal, goal_path)
    tower = tower._replace(module=tower.module.clone(dtype=jnp.dtype(encoder_dtype)))
    goal_dir = prompt_embedding(jnp.asarray(goal.vlmrm_goal_text))
    baseline_dir = prompt_embedding(jnp.asarray(goal.vlmrm_baseline_text))

    @jax.jit
    def reward(frames: jax.Array) -> jax.Array:
        embedding = tower.apply(tower.params, preprocess_images(frames, tower.config))
        return vlmrm_reward(embedding, goal_dir, baseline_dir, lam)

    return reward, tower.config.image_size


def _check_keyframe(tower, goal: GoalFile, goal_path: str) -> None:
    with jax.default_matmul_precision("highest"):
        pixels = preprocess_images(jnp.asarray(goal.keyframe)[None], tower.config)
        ours = normalise(tower.apply(tower.params, pixels))[0]
    cosine = float(ours @ normalise(jnp.asarray(goal.clip_keyframe_embedding)))
    if not cosine >= KEYFRAME_MIN_COSINE:
        raise GoalMismatchError(
            f"{goal_path}: our CLIP tower embeds the keyframe at cosine "
            f"{cosine:.4f} to the stored embedding (need "
            f"{KEYFRAME_MIN_COSINE}); other weights or preprocessing"
        )


class VLMRMRewards(GoalFileBaseline):
    """VLM-RM's reward model (``interface.RewardModel``) for one training run."""

    raw_key = "r_vlmrm"

    def __init__(self, config: VLMRMConfig, num_envs: int, image_size: int):
        super().__init__(load_goals(config.goal_file), num_envs)
        self.config = config
        self._reward, self.clip_size = vlmrm_reward_fn(
            self.goal_path, self.goal, config.lam, config.encoder_dtype
        )
        self.needs_extra_render = self.clip_size != image_size
        self.raw_stats, self.env_stats = RunningStats(), RunningStats()
        self._raw: list[np.ndarray] = []
        self._scaled: list[np.ndarray] = []

    # ------------------------------------------------------------------ RewardModel
    @property
    def extra_size(self) -> int | None:
        return self.clip_size if self.needs_extra_render else None

    def render_mask(self, next_is_first: np.ndarray | None = None) -> np.ndarray:
        return np.full(self.num_envs, self.needs_extra_render)

    def scale(self) -> float:
        """w (paper) or w·σ_env (calibrated): the factor on the raw or standardised reward."""
        if self.config.reward_scaling == "paper":
            return self.config.weight
        return self.config.weight * env_spread(self.env_stats, self.config.env_reward)

    def process(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Adds r_env, r_vlmrm and the combined reward to a batch of observations."""
        cfg = self.config
        first = np.asarray(obs["is_first"], bool)
        self.track_goal_index(obs, first)
        frames = obs["extra_image"] if self.needs_extra_render else obs["image"]
        raw = np.asarray(self._reward(jnp.asarray(frames)), np.float32)
        r_env = np.asarray(obs["reward"], np.float32)
        self.env_stats.update(r_env[~first])
        term = np.zeros_like(raw)  # a reset is no transition: no term
        term[~first] = generated_term(
            raw[~first], self.raw_stats, cfg.reward_scaling, cfg.weight, self.scale()
        )
        self._raw.append(raw[~first])
        self._scaled.append(term[~first])
        reward = (r_env if cfg.env_reward else np.zeros_like(r_env)) + term
        return {**obs, "r_env": r_env, "r_vlmrm": raw, "reward": reward.astype(np.float32)}

    def metrics(self) -> dict[str, float]:
        """Raw and scaled reward over the steps since the last call, and the scaled term's
        per-step spread against the env reward's."""
        out = {
            "rewards/env_scale": float(self.env_stats.std),
            "rewards/vlmrm_scale": float(self.scale()),
        }
        raw = np.concatenate(self._raw) if self._raw else np.zeros(0)
        if raw.size:
            scaled = np.concatenate(self._scaled)
            spread = env_spread(self.env_stats, self.config.env_reward)
            out.update(
                {
                    "rewards/vlmrm": float(raw.mean()),
                    "rewards/vlmrm_std": float(raw.std()),
                    "rewards/vlmrm_scaled_std": float(scaled.std()),
                    "rewards/vlmrm_step_spread_vs_env": float(scaled.std() / spread),
                }
            )
        self._raw, self._scaled = [], []
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        return {
            "goal_index": self._goal_index.copy(),
            "raw_stats": self.raw_stats.array(),
            "env_stats": self.env_stats.array(),
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self._goal_index = np.asarray(state["goal_index"], np.int64).copy()
        self.raw_stats.load(state["raw_stats"])
        self.env_stats.load(state["env_stats"])
