"""Parity of our CogVideoX VAE encoder with diffusers' AutoencoderKLCogVideoX.encode()."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genreward_jax.encoders import (
    CogVideoXVAEEncoder,
    chunk_lengths,
    encode_chunked,
    latent_frames,
    load_vae_encoder,
    video_to_vae_input,
)

TOLERANCE = 1e-4  # absolute, float32, highest matmul precision


def _video(batch: int, frames: int, height: int, width: int, seed: int) -> np.ndarray:
    return (
        np.random.default_rng(seed)
        .uniform(-1, 1, (batch, frames, height, width, 3))
        .astype(np.float32)
    )


@pytest.fixture(scope="module")
def tiny_encoder(tiny_vae):
    loaded = load_vae_encoder(tiny_vae.folder)
    one_pass = jax.jit(loaded.apply)
    chunked = jax.jit(lambda params, video: encode_chunked(loaded.module, params, video))
    return loaded, one_pass, chunked


def test_chunk_lengths_follow_diffusers_loop():
    assert chunk_lengths(1) == (1,)
    assert chunk_lengths(7) == (7,)
    assert chunk_lengths(9) == (9,)
    assert chunk_lengths(15) == (15,)
    assert chunk_lengths(16) == (8, 8)
    assert chunk_lengths(17) == (9, 8)
    assert chunk_lengths(18) == (10, 8)
    assert chunk_lengths(49) == (9, 8, 8, 8, 8, 8)
    with pytest.raises(ValueError, match="at least one frame"):
        chunk_lengths(0)


@pytest.mark.parametrize("frames", [1, 9, 16, 17])
def test_tiny_vae_matches_diffusers(tiny_vae, tiny_encoder, frames):
    """One chunk (1, 9 frames), two chunks of 8 (16) and 9 + 8 (17); batch 2, non-square."""
    loaded, one_pass, chunked = tiny_encoder
    video = _video(2, frames, 24, 40, seed=frames)
    ref_mean, ref_logvar = tiny_vae.vae_encode(video)
    assert ref_mean.shape == (2, latent_frames(frames, loaded.config), 6, 10, 4)
    # The literal chunk-by-chunk loop is checked where chunks differ in length.
    paths = (one_pass, chunked) if frames == 17 else (one_pass,)
    with jax.default_matmul_precision("highest"):
        for encode in paths:
            mean, logvar = encode(loaded.params, jnp.asarray(video))
            assert mean.shape == ref_mean.shape and logvar.shape == ref_logvar.shape
            np.testing.assert_allclose(np.asarray(mean), ref_mean, rtol=0, atol=TOLERANCE)
            np.testing.assert_allclose(np.asarray(logvar), ref_logvar, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("conv_impl", ["conv3d", "taps2d"])
def test_both_convolution_lowerings_match(tiny_vae, conv_impl):
    """Both ways of running the 3x3x3 convolutions ('auto' picks taps2d on CPU, conv3d else)."""
    video = _video(1, 17, 16, 24, seed=4)
    ref_mean, ref_logvar = tiny_vae.vae_encode(video)
    loaded = load_vae_encoder(tiny_vae.folder, conv_impl=conv_impl)
    with jax.default_matmul_precision("highest"):
        mean, logvar = jax.jit(loaded.apply)(loaded.params, jnp.asarray(video))
    np.testing.assert_allclose(np.asarray(mean), ref_mean, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(np.asarray(logvar), ref_logvar, rtol=0, atol=TOLERANCE)


def test_unknown_conv_impl_is_rejected(tiny_vae):
    with pytest.raises(ValueError, match="conv_impl"):
        load_vae_encoder(tiny_vae.folder, conv_impl="winograd")


def test_quant_conv_even_first_chunk_matches_diffusers(tiny_vae_quant):
    # 18 frames: chunks of 10 and 8 (an even first chunk); quant_conv applied per chunk.
    loaded = load_vae_encoder(tiny_vae_quant.folder)
    video = _video(1, 18, 16, 24, seed=3)
    ref_mean, ref_logvar = tiny_vae_quant.vae_encode(video)
    with jax.default_matmul_precision("highest"):
        mean, logvar = jax.jit(loaded.apply)(loaded.params, jnp.asarray(video))
    assert mean.shape == ref_mean.shape == (1, 9, 4, 6, 3)
    np.testing.assert_allclose(np.asarray(mean), ref_mean, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(np.asarray(logvar), ref_logvar, rtol=0, atol=TOLERANCE)


def test_ignoring_chunks_would_be_caught(tiny_vae, tiny_encoder):
    """Encoding 17 frames as one chunk (GroupNorm over all frames) is measurably different, so the
    parity tests above do check the chunking."""
    loaded, _, _ = tiny_encoder
    video = _video(2, 17, 24, 40, seed=17)
    ref_mean, _ = tiny_vae.vae_encode(video)
    single_chunk = jax.jit(
        lambda params, video: loaded.module.apply(
            {"params": params}, video, None, method=CogVideoXVAEEncoder.encode_chunk
        )
    )
    with jax.default_matmul_precision("highest"):
        mean, _, _ = single_chunk(loaded.params, jnp.asarray(video))
    assert mean.shape == ref_mean.shape
    assert np.abs(np.asarray(mean) - ref_mean).max() > 100 * TOLERANCE


def test_video_to_vae_input_range():
    frames = np.array([[[[0, 255, 128]]]], np.uint8)
    np.testing.assert_allclose(
        np.asarray(video_to_vae_input(frames)), [[[[-1.0, 1.0, 128 / 255 * 2 - 1]]]], atol=1e-7
    )


def test_rejects_channels_first(tiny_encoder):
    loaded, _, _ = tiny_encoder
    with pytest.raises(ValueError, match="channels-last"):
        loaded.apply(loaded.params, jnp.zeros((1, 3, 9, 16, 16)))


def test_bfloat16_close_to_float32(tiny_vae, tiny_encoder):
    loaded, one_pass, _ = tiny_encoder
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(loaded.params))
    low = load_vae_encoder(tiny_vae.folder, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree_util.tree_leaves(low.params))
    video = jnp.asarray(_video(2, 9, 24, 40, seed=9))
    with jax.default_matmul_precision("highest"):
        mean32, logvar32 = one_pass(loaded.params, video)
    mean16, logvar16 = jax.jit(low.apply)(low.params, video)
    assert mean16.dtype == jnp.float32
    assert float(jnp.abs(mean16 - mean32).max()) < 0.05 * float(jnp.abs(mean32).max())
    assert float(jnp.abs(logvar16 - logvar32).max()) < 0.05 * float(jnp.abs(logvar32).max())
    assert float(jnp.abs(mean16 - mean32).max()) > 0  # it did compute in lower precision


@pytest.mark.slow
def test_real_5b_vae_config_matches_diffusers(real_vae):
    """The CogVideoX-5B VAE config (random weights), 17 frames in two chunks, non-square 16x24."""
    loaded = load_vae_encoder(real_vae.folder)
    video = _video(1, 17, 16, 24, seed=11)
    ref_mean, ref_logvar = real_vae.vae_encode(video)
    with jax.default_matmul_precision("highest"):
        mean, logvar = jax.jit(loaded.apply)(loaded.params, jnp.asarray(video))
    assert mean.shape == ref_mean.shape == (1, 5, 2, 3, 16)
    np.testing.assert_allclose(np.asarray(mean), ref_mean, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(np.asarray(logvar), ref_logvar, rtol=0, atol=TOLERANCE)
