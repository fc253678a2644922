"""Session-scoped PyTorch reference encoders with random weights, saved with save_pretrained.

Norm scales/biases and LayerScales are randomised too (their default init is 1/0), so a swapped
or dropped affine parameter cannot hide. DINOv3 uses a larger init range than its default 0.02
so attention is far from uniform and RoPE mistakes show.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from diffusers import AutoencoderKLCogVideoX
from safetensors.torch import save_file
from transformers import DINOv3ViTConfig, DINOv3ViTModel

from preprocessing.models import COGVIDEOX_5B_VAE_CONFIG, DINOV3_VITS16PLUS_CONFIG


@dataclasses.dataclass
class Reference:
    """A PyTorch reference model and the folder it was saved to; methods take/return numpy
    channels-last arrays."""

    folder: Path
    model: torch.nn.Module

    def vae_encode(self, video: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """diffusers encode() on video [B, T, H, W, C] -> (mean, logvar) [B, T', H', W', L]."""
        with torch.no_grad():
            posterior = self.model.encode(torch.from_numpy(np.moveaxis(video, -1, 1))).latent_dist
        return _channels_last(posterior.mean), _channels_last(posterior.logvar)

    def dino_forward(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """DINOv3ViTModel on pixels [B, H, W, C] -> {"pooled": [B, D], "patch_tokens": [B, P, D]}"""
        prefix = 1 + self.model.config.num_register_tokens
        with torch.no_grad():
            out = self.model(pixel_values=torch.from_numpy(np.moveaxis(pixels, -1, 1)))
        return {
            "pooled": out.pooler_output.numpy(),
            "patch_tokens": out.last_hidden_state[:, prefix:].numpy(),
        }


def _channels_last(tensor: torch.Tensor) -> np.ndarray:
    return np.moveaxis(tensor.detach().float().numpy(), 1, -1)


def randomise_affine(model: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name or "lambda1" in name:
                noise = torch.randn(param.shape, generator=generator) * 0.5
                base = 0.0 if name.endswith("bias") else 1.0
                param.copy_(noise + base)


def vae_reference(folder: Path, seed: int, **config) -> Reference:
    torch.manual_seed(seed)
    blocks = len(config["block_out_channels"])
    model = AutoencoderKLCogVideoX(
        down_block_types=("CogVideoXDownBlock3D",) * blocks,
        up_block_types=("CogVideoXUpBlock3D",) * blocks,
        **config,
    ).eval()
    randomise_affine(model, seed)
    model.save_pretrained(folder)
    return Reference(folder, model)


def dinov3_reference(folder: Path, seed: int, **config) -> Reference:
    torch.manual_seed(seed)
    model = DINOv3ViTModel(DINOv3ViTConfig(**config)).eval()
    randomise_affine(model, seed)
    model.save_pretrained(folder)
    return Reference(folder, model)


# Three down blocks (two with time compression), shortcut convs 8 -> 16, non-default eps and groups.
TINY_VAE = dict(
    block_out_channels=(8, 16, 16),
    latent_channels=4,
    layers_per_block=1,
    norm_num_groups=4,
    norm_eps=1e-5,
)
# quant_conv on (diffusers only accepts it when out_channels == latent_channels), one time level.
TINY_VAE_QUANT = dict(
    block_out_channels=(8, 8, 16),
    latent_channels=3,
    out_channels=3,
    layers_per_block=1,
    norm_num_groups=2,
    use_quant_conv=True,
    temporal_compression_ratio=2,
)
REAL_VAE = COGVIDEOX_5B_VAE_CONFIG

TINY_DINO_GATED = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_register_tokens=2,
    use_gated_mlp=True,
    hidden_act="silu",
    initializer_range=0.3,
    patch_size=8,
)
TINY_DINO_PLAIN = dict(
    hidden_size=48,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=3,
    num_register_tokens=0,
    use_gated_mlp=False,
    hidden_act="gelu",
    initializer_range=0.3,
    patch_size=8,
    key_bias=True,
    layer_norm_eps=1e-6,
)
# DINOv3 ViT-S/16+, with a larger init range so attention is far from uniform.
REAL_DINO = {**DINOV3_VITS16PLUS_CONFIG, "key_bias": False, "initializer_range": 0.05}


@pytest.fixture(scope="session")
def tiny_vae(tmp_path_factory) -> Reference:
    return vae_reference(tmp_path_factory.mktemp("tiny_vae"), 0, **TINY_VAE)


@pytest.fixture(scope="session")
def tiny_vae_quant(tmp_path_factory) -> Reference:
    return vae_reference(tmp_path_factory.mktemp("tiny_vae_quant"), 1, **TINY_VAE_QUANT)


@pytest.fixture(scope="session")
def real_vae(tmp_path_factory) -> Reference:
    return vae_reference(tmp_path_factory.mktemp("real_vae"), 2, **REAL_VAE)


@pytest.fixture(scope="session")
def tiny_dino(tmp_path_factory) -> Reference:
    return dinov3_reference(tmp_path_factory.mktemp("tiny_dino"), 3, **TINY_DINO_GATED)


@pytest.fixture(scope="session")
def tiny_dino_plain(tmp_path_factory) -> Reference:
    return dinov3_reference(tmp_path_factory.mktemp("tiny_dino_plain"), 4, **TINY_DINO_PLAIN)


@pytest.fixture(scope="session")
def real_dino(tmp_path_factory) -> Reference:
    return dinov3_reference(tmp_path_factory.mktemp("real_dino"), 5, **REAL_DINO)


TINY_CLIP = {
    "embed_dim": 24,
    "quick_gelu": False,
    "vision_cfg": {
        "image_size": 32,
        "patch_size": 8,
        "width": 32,
        "layers": 2,
        "head_width": 8,
        "ls_init_value": 0.5,
    },
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}
CLIP_PREPROCESS = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}


def clip_reference(folder, model_cfg, seed=0):
    """A random-weight open_clip CLIP model saved as a hub folder; returns the torch model."""
    torch.manual_seed(seed)
    model = open_clip.CLIP(**model_cfg).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.visual.named_parameters():
            if "ln_" in name or "gamma" in name:
                base = 0.0 if name.endswith("bias") else 1.0
                param.copy_(base + 0.5 * torch.randn(param.shape, generator=generator))
            elif name.endswith("bias"):
                param.copy_(0.1 * torch.randn(param.shape, generator=generator))
    folder.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(folder / "open_clip_model.safetensors"),
    )
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": model_cfg, "preprocess_cfg": CLIP_PREPROCESS})
    )
    return model


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """Folder of a tiny random-weight open_clip model (open_clip_config.json + safetensors)."""
    folder = tmp_path_factory.mktemp("clip")
    clip_reference(folder, TINY_CLIP)
    return folder


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory):
    """A tiny Stable Diffusion folder (preprocessing's tiny mode), its UNet also saved as the
    torch pickle diffusion_pytorch_model.bin under unet_bin/."""
    from diffusers import UNet2DConditionModel

    from preprocessing.models import tiny_stable_diffusion

    folder = tmp_path_factory.mktemp("stable_diffusion")
    tiny_stable_diffusion(0, str(folder))
    unet = UNet2DConditionModel.from_pretrained(folder / "unet")
    unet.save_pretrained(folder / "unet_bin", safe_serialization=False)
    return folder
