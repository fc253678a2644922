"""Goal encodings: uniform frame sampling, resizing, the VAE latent mean, and the DINOv3 feature.

Default sample count is 17 (= 4k+1), not the paper's 16: the CogVideoX VAE is causal in time and
was trained on 4k+1 frames, so 17 frames give 5 latent frames where the first encodes frame 0 alone
and each later one summarises exactly 4 frames; 16 frames are chunked 8 + 8 with an odd-length
temporal downsample inside each chunk and reconstruct worse. The count is a flag and
is recorded in the goal's provenance, so the online stage samples its window the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image

from genreward_jax.goals import uniform_indices

DEFAULT_NUM_SAMPLED_FRAMES = 17
RESIZE_METHOD = "PIL bilinear (antialiased), squashing to S x S"


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """[N, H, W, 3] uint8 -> [N, S, S, 3] uint8; no-op when already S x S.

    Non-square videos (CogVideoX's 480x720) are squashed, the inverse of how the square first frame
    was stretched for the generator, so the scene keeps its geometry through the round trip.
    """
    if frames.shape[1:3] == (size, size):
        return frames
    return np.stack(
        [
            np.asarray(Image.fromarray(f).resize((size, size), Image.Resampling.BILINEAR))
            for f in frames
        ]
    )


def frames_to_vae_input(frames: np.ndarray) -> torch.Tensor:
    """[K, S, S, 3] uint8 -> [1, 3, K, S, S] float32 in [-1, 1] (diffusers' video layout)."""
    video = torch.from_numpy(np.ascontiguousarray(frames)).float() / 127.5 - 1.0
    return video.permute(3, 0, 1, 2).unsqueeze(0)


@contextlib.contextmanager
def full_float32_precision() -> Iterator[None]:
    """Turns off TF32 in CUDA matmuls and convolutions for the block (PyTorch enables it for
    convolutions by default), so a goal encoded on a GPU matches a CPU / full-precision encode
    (max |diff| 2e-3 -> float32 rounding on an H200)."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


@torch.no_grad()
def encode_latent_mean(vae: torch.nn.Module, frames: np.ndarray, device: str = "cpu") -> np.ndarray:
    """VAE posterior mean of [K, S, S, 3] uint8 frames -> [T', S/8, S/8, C] float32 channels-last.

    The mean (not a sample) makes the goal deterministic; no scaling factor is applied.
    """
    vae.eval()
    video = frames_to_vae_input(frames).to(device=device, dtype=vae.dtype)
    with full_float32_precision():
        latent = vae.encode(video).latent_dist.mean  # [1, C, T', h, w]
    return latent[0].permute(1, 2, 3, 0).float().cpu().numpy()


def sample_and_encode(
    vae: torch.nn.Module, frames: np.ndarray, num_samples: int, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Picks uniform frame indices and encodes them: returns (indices [K], latent [T', h, w, C])."""
    indices = uniform_indices(frames.shape[0], num_samples)
    return indices, encode_latent_mean(vae, frames[indices], device)


@torch.no_grad()
def dinov3_feature(model: torch.nn.Module, processor, image: np.ndarray) -> np.ndarray:
    """DINOv3 pooled feature (CLS after the final norm) of one [S, S, 3] uint8 image -> [D] float32.

    Uses the model's own transformers image processor (resize 224, 1/255, ImageNet mean/std) and
    eval mode (train mode jitters the RoPE coordinates).
    """
    model.eval()
    pixels = processor(images=[image], return_tensors="pt")["pixel_values"]
    return model(pixel_values=pixels.float()).pooler_output[0].float().numpy()
