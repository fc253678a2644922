"""The online side of the VLM-RM baseline: a CLIP reward for every frame the agent sees.

Per env step, ``VLMRMRewards`` embeds each env's frame with our Flax open_clip tower (the frame
rendered at the tower's input size: an extra render when it differs from the policy's); its raw
score ``r_vlmrm`` is ``1 − ½‖(x − g)P‖²`` (``vlmrm.vlmrm_reward``), combined with the env reward
as ``baseline.FrameRewardBaseline`` says (``paper``: VLM-RM's own reward, as its authors train on
it alone with w = 1 and --noenv_reward; ``calibrated``: w is its per-step spread against the env
reward's).

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
from genreward_jax.rewards.baseline import FrameRewardBaseline, check_run_settings
from genreward_jax.rewards.goal_rewards import GoalMismatchError, load_goals
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


class VLMRMRewards(FrameRewardBaseline):
    """VLM-RM's reward model (``interface.RewardModel``) for one training run."""

    raw_key = "r_vlmrm"

    def __init__(self, config: VLMRMConfig, num_envs: int, image_size: int):
        goals = load_goals(config.goal_file)
        goal_path, goal = goals[0]
        self._reward, self.clip_size = vlmrm_reward_fn(
            goal_path, goal, config.lam, config.encoder_dtype
        )
        super().__init__(goals, num_envs, config, self.clip_size, image_size)

    def raw_rewards(self, frames: np.ndarray, obs: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self._reward(jnp.asarray(frames)), np.float32)
