"""Parity of our DINOv3 ViT and its preprocessing with transformers' DINOv3ViTModel / processor."""

from __future__ import annotations

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.torch import save_file
from transformers import DINOv3ViTImageProcessor

from genreward_jax.encoders import load_dinov3, preprocess_images

TOLERANCE = 1e-4  # absolute, float32, highest matmul precision


def _pixels(batch: int, height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, height, width, 3)).astype(np.float32)


def _assert_matches(reference, loaded, pixels: np.ndarray) -> dict[str, jax.Array]:
    expected = reference.dino_forward(pixels)
    with jax.default_matmul_precision("highest"):
        out = jax.jit(loaded.apply)(loaded.params, jnp.asarray(pixels))
    for name in ("pooled", "patch_tokens"):
        assert out[name].shape == expected[name].shape, name
        np.testing.assert_allclose(np.asarray(out[name]), expected[name], rtol=0, atol=TOLERANCE)
    # Random-weight outputs of order one, so the tolerance is meaningful.
    assert expected["patch_tokens"].std() > 0.3
    return out


def test_gated_mlp_registers_non_square_match(tiny_dino):
    # patch 8, 32x48 pixels -> a 4x6 patch grid: a transposed RoPE grid would not match.
    _assert_matches(tiny_dino, load_dinov3(tiny_dino.folder), _pixels(3, 32, 48, seed=0))


def test_plain_gelu_mlp_key_bias_no_registers_match(tiny_dino_plain):
    _assert_matches(tiny_dino_plain, load_dinov3(tiny_dino_plain.folder), _pixels(2, 40, 24, 1))


def test_state_dict_spelling_model_layer_loads(tiny_dino, tmp_path):
    """A transformers 5 state_dict() says `model.layer.N.*` (the hub files say `layer.N.*`)."""
    state = {k: v.contiguous() for k, v in tiny_dino.model.state_dict().items()}
    assert any(k.startswith("model.layer.0.") for k in state)
    shutil.copy(tiny_dino.folder / "config.json", tmp_path / "config.json")
    save_file(state, str(tmp_path / "model.safetensors"))
    _assert_matches(tiny_dino, load_dinov3(tmp_path), _pixels(1, 32, 32, seed=2))


@pytest.mark.parametrize(
    "shape, size",
    [
        ((64, 64), 224),
        ((256, 256), 224),
        ((480, 640), 224),
        ((100, 37), 224),
        ((64, 96), 128),
        ((224, 224), 224),
    ],
)
def test_preprocessing_matches_image_processor(shape, size):
    """Up- and downscaling (antialiased), non-square, configured size, identity size."""
    images = np.random.default_rng(0).integers(0, 256, (2, *shape, 3), dtype=np.uint8)
    processor = DINOv3ViTImageProcessor(size={"height": size, "width": size})
    expected = processor(images=list(images), return_tensors="pt")["pixel_values"]
    expected = np.moveaxis(expected.numpy(), 1, -1)
    ours = np.asarray(jax.jit(preprocess_images, static_argnums=1)(images, size))
    assert ours.shape == expected.shape == (2, size, size, 3)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=TOLERANCE)


@pytest.mark.slow
def test_real_vits16plus_config_matches_and_bfloat16(real_dino):
    """DINOv3 ViT-S/16+ config (random weights) at 64x96 (a 4x6 grid); bf16 close to float32."""
    loaded = load_dinov3(real_dino.folder)
    pixels = _pixels(2, 64, 96, seed=3)
    full = _assert_matches(real_dino, loaded, pixels)

    low = load_dinov3(real_dino.folder, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    half = jax.jit(low.apply)(low.params, jnp.asarray(pixels))
    for name in ("pooled", "patch_tokens"):
        assert half[name].dtype == jnp.float32
        error = float(jnp.abs(half[name] - full[name]).max())
        assert 0 < error < 0.1 * float(jnp.abs(full[name]).max()), (name, error)
