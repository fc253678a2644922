"""Keyframe selection: the goal frame OpenCLIP finds most similar to the keyframe prompt(s).

Several prompts are averaged (the authors' release averaged five generic grasp prompts): each
prompt's cosine with every frame is computed, and the keyframe is the argmax of the mean cosine.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from preprocessing.models import ClipModel


@dataclasses.dataclass
class KeyframeChoice:
    index: int
    scores: np.ndarray  # [N] float32, mean over prompts
    scores_per_prompt: np.ndarray  # [P, N] float32


@torch.no_grad()
def clip_cosines(
    clip: ClipModel, frames: np.ndarray, prompts: list[str], batch_size: int = 32
) -> np.ndarray:
    """cos(text(prompt_p), image(frame_n)) for [N, H, W, 3] uint8 frames -> [P, N] float32."""
    if not prompts:
        raise ValueError("at least one keyframe prompt is needed")
    text = clip.model.encode_text(clip.tokenizer(list(prompts))).float()
    text = text / text.norm(dim=-1, keepdim=True)
    image_features = []
    starts = range(0, len(frames), batch_size)
    for start in tqdm(starts, desc="CLIP scores", unit="batch", disable=len(starts) < 4):
        batch = torch.stack(
            [clip.preprocess(Image.fromarray(f)) for f in frames[start : start + batch_size]]
        )
        image_features.append(clip.model.encode_image(batch).float())
    image = torch.cat(image_features)
    image = image / image.norm(dim=-1, keepdim=True)
    return (text @ image.T).numpy().astype(np.float32)


def choose_keyframe(clip: ClipModel, frames: np.ndarray, prompts: list[str]) -> KeyframeChoice:
    """The keyframe (Eq. 6): scores every frame against every prompt and returns the argmax of
    the prompt-mean."""
    per_prompt = clip_cosines(clip, frames, prompts)
    scores = per_prompt.mean(axis=0).astype(np.float32)
    return KeyframeChoice(int(np.argmax(scores)), scores, per_prompt)
