"""Flax open_clip ViT image tower vs open_clip itself, random weights, saved as a hub folder.

Every parameter is randomised (LayerNorm affines and LayerScales too, whose default init is 1/0),
so a dropped or swapped one cannot hide; the reference is ``model.encode_image`` of the real
``open_clip.CLIP`` class built from the same config.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import open_clip
import pytest
import torch

from genreward_jax.encoders import clip_vit
from genreward_jax.encoders.weights import CheckpointError, load_clip_vision

from .conftest import CLIP_PREPROCESS, TINY_CLIP, clip_reference


def reference_embedding(model, pixels: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.encode_image(torch.from_numpy(np.moveaxis(pixels, -1, 1))).numpy()


def flax_embedding(folder, pixels: np.ndarray) -> np.ndarray:
    loaded = load_clip_vision(folder)
    with jax.default_matmul_precision("highest"):
        return np.asarray(jax.jit(loaded.apply)(loaded.params, jnp.asarray(pixels)))


def assert_matches_open_clip(folder, model_cfg, pixel_shape, dim) -> np.ndarray:
    """Saves a random-weight open_clip model of model_cfg, compares both towers on random
    pixels at 1e-4 (float32, highest matmul precision); returns the reference embeddings."""
    model = clip_reference(folder, model_cfg)
    pixels = np.random.default_rng(0).normal(size=pixel_shape).astype(np.float32)
    want = reference_embedding(model, pixels)
    got = flax_embedding(folder, pixels)
    assert got.shape == (pixel_shape[0], dim)
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max(), rtol=1e-4)
    return want


@pytest.mark.parametrize("quick_gelu, ls", [(False, 0.5), (True, None)])
def test_tiny_tower_matches_open_clip(tmp_path, quick_gelu, ls):
    cfg = {
        **TINY_CLIP,
        "quick_gelu": quick_gelu,
        "vision_cfg": {**TINY_CLIP["vision_cfg"], "ls_init_value": ls},
    }
    want = assert_matches_open_clip(tmp_path, cfg, (3, 32, 32, 3), 24)
    assert np.abs(want[0] - want[1]).max() > 1e-2  # inputs are told apart


def test_vit_b_32_config_matches_open_clip(tmp_path):
    """The real ViT-B-32 architecture (open_clip's own model config), random weights."""
    cfg = open_clip.get_model_config("ViT-B-32")
    assert_matches_open_clip(tmp_path, cfg, (2, 224, 224, 3), 512)


def test_preprocessing_uses_the_checkpoint_statistics(tmp_path):
    config = clip_vit.CLIPVisionConfig.from_open_clip(TINY_CLIP, CLIP_PREPROCESS)
    frames = np.full((1, 64, 64, 3), 255, np.uint8)
    pixels = np.asarray(clip_vit.preprocess_images(jnp.asarray(frames), config))
    assert pixels.shape == (1, 32, 32, 3)
    np.testing.assert_allclose(
        pixels[0, 0, 0], (1.0 - np.array([0.5, 0.4, 0.3])) / np.array([0.2, 0.25, 0.3]), rtol=1e-5
    )


def test_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="missing file: .*open_clip_config.json"):
        load_clip_vision(tmp_path)
    (tmp_path / "open_clip_config.json").write_text(
        json.dumps(
            {
                "model_cfg": {
                    **TINY_CLIP,
                    "vision_cfg": {**TINY_CLIP["vision_cfg"], "attentional_pool": True},
                }
            }
        )
    )
    with pytest.raises(CheckpointError, match="attentional_pool"):
        load_clip_vision(tmp_path)
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP}))
    (tmp_path / "open_clip_pytorch_model.bin").write_bytes(b"")
    with pytest.raises(CheckpointError, match="open_clip_model.safetensors"):
        load_clip_vision(tmp_path)
