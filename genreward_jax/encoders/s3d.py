"""S3D-G's video tower (MIL-NCE, HowTo100M) in Flax: RoboCLIP's episode embedding, online.

RoboCLIP rewards an episode, at its last step, with the dot product of the S3D embedding of the
episode's frames and a target embedding made offline (a text prompt or a demonstration video,
``preprocessing/s3d.py``, which also exports the weights this module loads). The port follows
that PyTorch module layer by layer, channels last ([B, T, H, W, C]); module and parameter names
mirror its state dict (``mixed_4b.conv_b1_b.conv1.weight`` -> ``mixed_4b/conv_b1_b/conv1/kernel``)
so weights load by name.

Two details carry the TensorFlow origin of the weights: the stem folds 2×2×2 blocks into channels
(space to depth) and drops the first output along each axis after its convolution, and the
stride-2 max-pools pad like TensorFlow's SAME (zeros, split low/high) with ceil-mode windows.
The Inception branches' stride-1 max-pool pads with −∞, as PyTorch's does.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

f32 = jnp.float32

EMBED_DIM = 512
# (b0, b1a, b1b, b2a, b2b, b3b) of each Inception block, in order (inputs follow from outputs).
INCEPTION = {
    "mixed_3b": (64, 96, 128, 16, 32, 32),
    "mixed_3c": (128, 128, 192, 32, 96, 64),
    "mixed_4b": (192, 96, 208, 16, 48, 64),
    "mixed_4c": (160, 112, 224, 24, 64, 64),
    "mixed_4d": (128, 128, 256, 24, 64, 64),
    "mixed_4e": (112, 144, 288, 32, 64, 64),
    "mixed_4f": (256, 160, 320, 32, 128, 128),
    "mixed_5b": (256, 160, 320, 32, 128, 128),
    "mixed_5c": (384, 192, 384, 48, 128, 128),
}
BN_EPS = 1e-5


class FrozenBatchNorm(nn.Module):
    """BatchNorm at inference: (x − running_mean) / √(running_var + ε) · scale + bias."""

    dtype: Any = f32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        mean = self.param("running_mean", nn.initializers.zeros, (c,))
        var = self.param("running_var", nn.initializers.ones, (c,))
        factor = scale * jax.lax.rsqrt(var + BN_EPS)
        return x * factor.astype(x.dtype) + (bias - mean * factor).astype(x.dtype)


class STConv3D(nn.Module):
    """Conv + BN + ReLU; separable: spatial (1, k, k) then temporal (k, 1, 1), each with BN."""

    features: int
    kernel: tuple[int, int, int]
    padding: tuple[int, int, int] = (0, 0, 0)
    separable: bool = False
    dtype: Any = f32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = dict(use_bias=False, dtype=self.dtype)
        if not self.separable:
            x = nn.Conv(
                self.features,
                self.kernel,
                padding=[(p, p) for p in self.padding],
                name="conv1",
                **conv,
            )(x)
            return nn.relu(FrozenBatchNorm(self.dtype, name="bn1")(x))
        k, p = self.kernel[0], self.padding[0]
        x = nn.Conv(
            self.features, (1, k, k), padding=[(0, 0), (p, p), (p, p)], name="conv1", **conv
        )(x)
        x = nn.relu(FrozenBatchNorm(self.dtype, name="bn1")(x))
        x = nn.Conv(
            self.features, (k, 1, 1), padding=[(p, p), (0, 0), (0, 0)], name="conv2", **conv
        )(x)
        return nn.relu(FrozenBatchNorm(self.dtype, name="bn2")(x))


class SelfGating(nn.Module):
    """Every channel scaled by a sigmoid of a linear map of the spatio-temporal mean."""

    dtype: Any = f32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        gate = nn.Dense(x.shape[-1], dtype=self.dtype, name="fc")(x.mean(axis=(1, 2, 3)))
        return jax.nn.sigmoid(gate)[:, None, None, None, :] * x


def same_max_pool(x: jax.Array, kernel: tuple[int, ...], stride: tuple[int, ...]) -> jax.Array:
    """[B, T, H, W, C]: zero padding of max(k − s, 0) split low/high per axis, then max-pooling
    with PyTorch's ceil mode (a last, partial window is kept when it starts inside the input)."""
    pads = [
        (max(k - s, 0) // 2, max(k - s, 0) - max(k - s, 0) // 2)
        for k, s in zip(kernel, stride, strict=True)
    ]
    x = jnp.pad(x, [(0, 0), *pads, (0, 0)])
    tails = []
    for size, k, s in zip(x.shape[1:4], kernel, stride, strict=True):
        out = math.ceil((size - k) / s) + 1
        if (out - 1) * s >= size:
            out -= 1
        tails.append((0, max((out - 1) * s + k - size, 0)))
    x = jnp.pad(x, [(0, 0), *tails, (0, 0)], constant_values=-jnp.inf)
    return jax.lax.reduce_window(
        x, -jnp.inf, jax.lax.max, (1, *kernel, 1), (1, *stride, 1), "VALID"
    )


class InceptionBlock(nn.Module):
    widths: tuple[int, int, int, int, int, int]
    dtype: Any = f32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b0, b1a, b1b, b2a, b2b, b3b = self.widths
        d = self.dtype
        y0 = STConv3D(b0, (1, 1, 1), dtype=d, name="conv_b0")(x)
        y1 = STConv3D(b1a, (1, 1, 1), dtype=d, name="conv_b1_a")(x)
        y1 = STConv3D(b1b, (3, 3, 3), (1, 1, 1), True, d, name="conv_b1_b")(y1)
        y2 = STConv3D(b2a, (1, 1, 1), dtype=d, name="conv_b2_a")(x)
        y2 = STConv3D(b2b, (3, 3, 3), (1, 1, 1), True, d, name="conv_b2_b")(y2)
        y3 = jax.lax.reduce_window(
            x,
            -jnp.inf,
            jax.lax.max,
            (1, 3, 3, 3, 1),
            (1,) * 5,
            [(0, 0), (1, 1), (1, 1), (1, 1), (0, 0)],
        )
        y3 = STConv3D(b3b, (1, 1, 1), dtype=d, name="conv_b3_b")(y3)
        return jnp.concatenate(
            [
                SelfGating(d, name="gating_b0")(y0),
                SelfGating(d, name="gating_b1")(y1),
                SelfGating(d, name="gating_b2")(y2),
                SelfGating(d, name="gating_b3")(y3),
            ],
            axis=-1,
        )


def space_to_depth(x: jax.Array) -> jax.Array:
    """[B, T, H, W, C] -> [B, T/2, H/2, W/2, 8C], channel ((dt·2 + dh)·2 + dw)·C + c (the
    PyTorch module's order)."""
    b, t, h, w, c = x.shape
    if t % 2 or h % 2 or w % 2:
        raise ValueError(f"S3D needs an even number of frames, height and width, got {t, h, w}")
    x = x.reshape(b, t // 2, 2, h // 2, 2, w // 2, 2, c)
    return x.transpose(0, 1, 3, 5, 2, 4, 6, 7).reshape(b, t // 2, h // 2, w // 2, 8 * c)


class S3DVideoTower(nn.Module):
    """video [B, T, H, W, 3] (float pixels as the target was embedded) -> embedding [B, 512]."""

    dtype: Any = f32

    @nn.compact
    def __call__(self, video: jax.Array) -> jax.Array:
        d = self.dtype
        x = space_to_depth(video.astype(d))
        x = STConv3D(64, (2, 4, 4), (1, 2, 2), dtype=d, name="conv1")(x)[:, 1:, 1:, 1:]
        x = same_max_pool(x, (1, 3, 3), (1, 2, 2))
        x = STConv3D(64, (1, 1, 1), dtype=d, name="conv_2b")(x)
        x = STConv3D(192, (3, 3, 3), (1, 1, 1), True, d, name="conv_2c")(x)
        x = SelfGating(d, name="gating")(x)
        x = same_max_pool(x, (1, 3, 3), (1, 2, 2))
        pools = {"mixed_4b": ((3, 3, 3), (2, 2, 2)), "mixed_5b": ((2, 2, 2), (2, 2, 2))}
        for name, widths in INCEPTION.items():
            if name in pools:
                x = same_max_pool(x, *pools[name])
            x = InceptionBlock(widths, d, name=name)(x)
        pooled = x.astype(f32).mean(axis=(1, 2, 3))
        return nn.Dense(EMBED_DIM, name="fc")(pooled)


def init_shapes() -> Any:
    """Abstract parameter tree (shapes only) for weight loading."""
    return jax.eval_shape(
        lambda: S3DVideoTower().init(jax.random.key(0), jnp.zeros((1, 8, 32, 32, 3)))["params"]
    )
