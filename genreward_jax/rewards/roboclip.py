"""RoboCLIP (Sontakke et al., NeurIPS 2023): one reward per episode, from a text–video model.

    r_T = ⟨S3D(episode video), target⟩,   r_t = 0 for t < T

The target is the S3D embedding of a text prompt or of a demonstration video, made offline
(``preprocessing/roboclip_section.py``). The episode video follows the release: the frame after
every step is kept, centre-cropped to ``crop`` pixels (the release: 250 × 250 out of its 480-row
renders), every ``stride``-th one from the first (4: 32 of 128 frames), pixel values 0–255 as the
release feeds them (S3D's own documentation asks for [0, 1]: ``unit_pixels``). This module holds
those shared pieces; online and offline videos go through the same ``episode_clip``.
"""

from __future__ import annotations

import numpy as np

RELEASE_CROP = 250
RELEASE_STRIDE = 4
RELEASE_RENDER = 480  # rows of the release's renders; a square render of this size has the
# same vertical field of view, so its centre crop shows the release's region


def centre_crop(frames: np.ndarray, crop: int) -> np.ndarray:
    """[..., H, W, 3] -> [..., c, c, 3], c = min(crop, H, W), around the centre."""
    h, w = frames.shape[-3:-1]
    c = min(crop, h, w)
    top, left = (h - c) // 2, (w - c) // 2
    return frames[..., top : top + c, left : left + c, :]


def kept_step(episode_step: np.ndarray, stride: int) -> np.ndarray:
    """Whether the frame at an episode step (0: the reset frame) enters the video: the frames
    after steps 1, 1 + stride, 1 + 2·stride, ... (the release keeps every stride-th frame of
    those after each step)."""
    episode_step = np.asarray(episode_step)
    return (episode_step >= 1) & ((episode_step - 1) % stride == 0)


def episode_clip(frames: np.ndarray, unit_pixels: bool = False) -> np.ndarray:
    """Kept frames [T, c, c, 3] uint8 -> S3D input [T', c', c', 3] float32, T' the even part
    of T and c' of c (S3D folds 2×2×2 blocks); values 0–255, or [0, 1] with ``unit_pixels``."""
    t = len(frames) - len(frames) % 2
    c = frames.shape[1] - frames.shape[1] % 2
    if t < 2:
        raise ValueError(f"RoboCLIP needs at least 2 kept frames per episode, got {len(frames)}")
    clip = np.asarray(frames[:t, :c, :c], np.float32)
    return clip / 255.0 if unit_pixels else clip
