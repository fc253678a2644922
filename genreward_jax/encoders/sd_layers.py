"""The building blocks Stable Diffusion's VAE encoder and UNet share, in Flax (Linen),
channels-last ([B, H, W, C]).

Each mirrors the diffusers module of the same job and its parameter names (``conv1``,
``time_emb_proj``, ``to_q``, ``to_out_0`` for ``to_out.0``), so ``weights._to_params`` maps a
diffusers state dict onto them by name: `ResnetBlock` is ``ResnetBlock2D``, `Downsample` and
`Upsample` are ``Downsample2D`` / ``Upsample2D``, `Attention` is ``Attention`` (self- or
cross-attention, optionally with its own GroupNorm and biases, as the VAE's mid block has it).
Norm statistics are two-pass in float32 (Flax's fast variance loses precision at large offsets);
softmax is float32 whatever the compute dtype (diffusers upcasts it in the VAE, and half-precision
logits of a 77-token cross-attention are where bfloat16 would hurt most).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

f32 = jnp.float32


def group_norm(groups: int, eps: float, dtype: Any, name: str | None = None) -> nn.GroupNorm:
    return nn.GroupNorm(
        num_groups=groups, epsilon=eps, dtype=dtype, use_fast_variance=False, name=name
    )


def conv(features: int, kernel: int, dtype: Any, name: str, stride: int = 1, pad: int = -1):
    """A square convolution; `pad` -1 means 'same' for odd kernels (kernel // 2 on each side)."""
    pad = kernel // 2 if pad < 0 else pad
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        dtype=dtype,
        name=name,
    )


class ResnetBlock(nn.Module):
    """diffusers ``ResnetBlock2D`` (time-scale-shift 'default'): norm, SiLU, conv, (+ projected
    time embedding), norm, SiLU, conv, plus a 1x1-projected shortcut when channels change."""

    out_channels: int
    groups: int
    eps: float
    output_scale_factor: float = 1.0
    dtype: Any = f32

    @nn.compact
    def __call__(self, x: jax.Array, temb: jax.Array | None = None) -> jax.Array:
        # x: [B, H, W, C_in], temb: [B, T] or None -> [B, H, W, out_channels]
        h = jax.nn.silu(group_norm(self.groups, self.eps, self.dtype, "norm1")(x))
        h = conv(self.out_channels, 3, self.dtype, "conv1")(h)
        if temb is not None:
            t = nn.Dense(self.out_channels, dtype=self.dtype, name="time_emb_proj")(
                jax.nn.silu(temb)
            )
            h = h + t[:, None, None, :]
        h = jax.nn.silu(group_norm(self.groups, self.eps, self.dtype, "norm2")(h))
        h = conv(self.out_channels, 3, self.dtype, "conv2")(h)
        if x.shape[-1] != self.out_channels:
            x = conv(self.out_channels, 1, self.dtype, "conv_shortcut")(x)
        return (x + h) / self.output_scale_factor


class Downsample(nn.Module):
    """diffusers ``Downsample2D`` with a conv: stride-2 3x3. `padding` 1 pads both sides (the
    UNet); 0 pads only bottom and right by one pixel, as the VAE encoder does."""

    features: int
    padding: int
    dtype: Any = f32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.padding == 0:
            x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
        return conv(self.features, 3, self.dtype, "conv", stride=2, pad=self.padding)(x)


class Upsample(nn.Module):
    """diffusers ``Upsample2D`` with a conv: nearest-neighbour 2x, then a 3x3 conv."""

    features: int
    dtype: Any = f32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        return conv(self.features, 3, self.dtype, "conv")(x)


class Attention(nn.Module):
    """diffusers ``Attention``: `heads` heads of `head_dim` over token sequences [B, N, C], keys
    and values from `context` (cross-attention) or from the queries (self-attention).

    With `spatial_groups` set it is the VAE's form: the input is a feature map [B, H, W, C],
    GroupNorm-ed (``group_norm``), attended over its H·W positions and added back (residual)."""

    heads: int
    head_dim: int
    out_features: int
    qkv_bias: bool = False
    spatial_groups: int | None = None
    dtype: Any = f32

    @nn.compact
    def __call__(self, x: jax.Array, context: jax.Array | None = None) -> jax.Array:
        # x: [B, N, C] (or [B, H, W, C] with spatial_groups), context: [B, M, D] or None
        residual = x
        if self.spatial_groups is not None:
            x = group_norm(self.spatial_groups, 1e-6, self.dtype, "group_norm")(x)
            x = x.reshape(x.shape[0], -1, x.shape[-1])
        context = x if context is None else context
        inner = self.heads * self.head_dim

        def project(name: str, source: jax.Array) -> jax.Array:
            y = nn.Dense(inner, use_bias=self.qkv_bias, dtype=self.dtype, name=name)(source)
            return y.reshape(*y.shape[:2], self.heads, self.head_dim)  # [B, N, heads, head_dim]

        q, k, v = project("to_q", x), project("to_k", context), project("to_v", context)
        logits = jnp.einsum("bnhd,bmhd->bhnm", q, k, preferred_element_type=f32)
        weights = jax.nn.softmax(logits * self.head_dim**-0.5, axis=-1).astype(self.dtype)
        out = jnp.einsum("bhnm,bmhd->bnhd", weights, v).reshape(*x.shape[:2], inner)
        out = nn.Dense(self.out_features, dtype=self.dtype, name="to_out_0")(out)
        if self.spatial_groups is not None:
            return residual + out.reshape(residual.shape)
        return out
