"""The goal file's VLM-RM section: open_clip embeddings made offline, read by the online baseline.

VLM-RM (Rocamonde et al., ICLR 2024) rewards a frame by how close its CLIP image embedding lies
to a goal prompt's text embedding, measured along the direction from a baseline prompt to the
goal prompt. Only the image side runs online (our Flax tower, `genreward_jax/encoders/clip_vit`);
the text side is embedded here, once, by open_clip itself. The keyframe's image embedding is
stored too, so the online stage can check that its tower and preprocessing reproduce open_clip's
before it trusts a single reward.

Default prompts: the goal prompts are the goal's keyframe prompts (the task's description of its
solved state, which is what VLM-RM's goal prompt describes); the baseline prompt names what every
frame shows whether or not the task is solved (`prompts.VLMRM_BASELINE_PROMPTS`).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch
from PIL import Image

from genreward_jax.encoders.weights import weights_hash
from preprocessing.models import ClipModel


@dataclasses.dataclass
class VLMRMSection:
    goal_text: np.ndarray  # [G, E] float32, encode_text of the goal prompts (not normalised)
    baseline_text: np.ndarray  # [Q, E] float32
    keyframe_embedding: np.ndarray  # [E] float32, encode_image of the keyframe
    provenance: dict  # entries for the goal's provenance 'clip'


@torch.no_grad()
def vlmrm_section(
    clip: ClipModel,
    goal_prompts: list[str],
    baseline_prompts: list[str],
    keyframe: np.ndarray,
    goal_dir: str,
) -> VLMRMSection:
    """Embeds the prompts and the keyframe [S, S, 3] uint8 with open_clip; the provenance names
    the prompts (in row order) and, when the weights lie in an open_clip folder, its path
    (absolute and relative to `goal_dir`) and `weights_hash`."""
    if not goal_prompts or not baseline_prompts:
        raise ValueError("VLM-RM needs at least one goal prompt and one baseline prompt")
    goal_text = clip.model.encode_text(clip.tokenizer(list(goal_prompts))).float().numpy()
    baseline_text = clip.model.encode_text(clip.tokenizer(list(baseline_prompts))).float().numpy()
    pixels = clip.preprocess(Image.fromarray(keyframe))[None]
    image = clip.model.encode_image(pixels).float().numpy()[0]
    provenance = {
        "vlmrm_goal_prompts": list(goal_prompts),
        "vlmrm_baseline_prompts": list(baseline_prompts),
        "image_size": int(pixels.shape[-1]),
    }
    if clip.folder:
        provenance.update(
            path=clip.folder,
            path_from_goal=os.path.relpath(clip.folder, goal_dir),
            hash=weights_hash(clip.folder),
        )
    return VLMRMSection(
        goal_text.astype(np.float32),
        baseline_text.astype(np.float32),
        image.astype(np.float32),
        provenance,
    )
