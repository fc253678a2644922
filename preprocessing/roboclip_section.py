"""The goal file's RoboCLIP section: the S3D target embedding, made offline with PyTorch.

RoboCLIP rewards an episode by how close its S3D video embedding lies to a target embedding:
of a text prompt (the task's video prompt by default) or of a demonstration video (here: the goal
video itself, cropped and strided as an episode is online). The S3D video tower's weights are
exported beside the goal (``preprocessing/s3d.export_video_tower``) for the online Flax port,
and the provenance records that folder's hash and the clip settings, so the online episode
videos are made as the target was.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch

from genreward_jax.encoders.weights import weights_hash
from genreward_jax.rewards.roboclip import centre_crop, episode_clip, kept_step
from preprocessing.s3d import S3D, export_video_tower

ROBOCLIP_TARGETS = ("text", "goal_video")


@dataclasses.dataclass
class RoboCLIPSection:
    target: np.ndarray  # [512] float32
    provenance: dict


@torch.no_grad()
def roboclip_section(
    model: S3D,
    model_id: str,
    target: str,
    prompt: str,
    goal_frames: np.ndarray,
    export_dir: str,
    goal_dir: str,
    crop: int,
    stride: int,
    unit_pixels: bool = False,
) -> RoboCLIPSection:
    """Embeds the target ('text': `prompt`; 'goal_video': the goal's frames [N, H, W, 3] uint8,
    frame 0 the start scene) and exports the video tower to `export_dir`."""
    if target not in ROBOCLIP_TARGETS:
        raise ValueError(f"--roboclip_target must be one of {ROBOCLIP_TARGETS}, got {target!r}")
    if target == "text":
        embedding = model.text_module([prompt])[0]
    else:
        kept = centre_crop(goal_frames[kept_step(np.arange(len(goal_frames)), stride)], crop)
        clip = torch.from_numpy(episode_clip(kept, unit_pixels)).permute(3, 0, 1, 2)[None]
        embedding = model(clip)[0]
    folder = export_video_tower(model, export_dir)
    provenance = {
        "id": model_id,
        "target": target,
        "prompt": prompt if target == "text" else None,
        "crop": int(crop),
        "stride": int(stride),
        "pixel_range": "[0, 1]" if unit_pixels else "[0, 255]",
        "path": folder,
        "path_from_goal": os.path.relpath(folder, goal_dir),
        "hash": weights_hash(folder),
    }
    return RoboCLIPSection(embedding.float().numpy().astype(np.float32), provenance)
