"""Frozen encoders ported to Flax: the CogVideoX VAE encoder and DINOv3 ViT (GenReward's goal
targets), open_clip's ViT image tower (the VLM-RM baseline), S3D-G's video tower (RoboCLIP) and
Stable Diffusion's VAE encoder and UNet (TADPoLe).

Load with `load_vae_encoder(folder)` / `load_dinov3(folder)` / `load_clip_vision(folder)` (see
`weights` for the API); each returns `LoadedEncoder(module, params, config)` whose
`apply(params, x)` is pure and jittable.

Why Linen here while the agent is NNX: each encoder is a frozen function of a parameter tree read
from someone else's checkpoint, `apply(params, x)`, which Linen states directly (and its
parameter paths mirror the PyTorch state dicts the loaders translate); the agent's modules carry
optimizer state, target networks and mutable submodules, which is what NNX's objects are for.
"""

from genreward_jax.encoders.cogvideox_vae import (
    CogVideoXVAEEncoder,
    VAEEncoderConfig,
    chunk_lengths,
    encode_chunked,
    latent_frames,
    latent_mean_fn,
    video_to_vae_input,
)
from genreward_jax.encoders.dinov3 import (
    DINOv3Config,
    DINOv3ViT,
    pooled_feature_fn,
    preprocess_images,
)
from genreward_jax.encoders.weights import (
    CheckpointError,
    LoadedEncoder,
    load_clip_vision,
    load_dinov3,
    load_s3d_video,
    load_sd_unet,
    load_sd_vae_encoder,
    load_vae_encoder,
    weights_hash,
)

__all__ = [
    "CheckpointError",
    "CogVideoXVAEEncoder",
    "DINOv3Config",
    "DINOv3ViT",
    "LoadedEncoder",
    "VAEEncoderConfig",
    "chunk_lengths",
    "encode_chunked",
    "latent_frames",
    "latent_mean_fn",
    "load_clip_vision",
    "load_dinov3",
    "load_s3d_video",
    "load_sd_unet",
    "load_sd_vae_encoder",
    "load_vae_encoder",
    "pooled_feature_fn",
    "preprocess_images",
    "video_to_vae_input",
    "weights_hash",
]
