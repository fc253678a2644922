"""Encoder half of diffusers' ``AutoencoderKL`` (Stable Diffusion's image VAE) in Flax (Linen),
channels-last.

TADPoLe encodes every frame the agent sees into Stable Diffusion's latent space before noising
it, so the online stage needs ``vae.encode(x).latent_dist`` exactly: the encoder (conv_in, down
blocks of ResNets with a bottom/right-padded stride-2 conv between them, a mid block of ResNet,
single-head self-attention, ResNet, then norm, SiLU, conv_out to mean and log-variance) and
``quant_conv``. `SDVAEEncoder.__call__` returns (mean, logvar) [B, H/f, W/f, latent_channels],
logvar clamped to [-30, 20] as ``DiagonalGaussianDistribution`` does; `sample_latent` draws from
that posterior and applies ``scaling_factor``, which is what the UNet was trained on.

Parameter names mirror the diffusers state dict (``encoder.down_blocks_0.resnets_1.conv1.kernel``
for ``encoder.down_blocks.0.resnets.1.conv1.weight``); see ``genreward_jax.encoders.weights``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genreward_jax.encoders.sd_layers import Attention, Downsample, ResnetBlock, conv, group_norm

f32 = jnp.float32

LOGVAR_RANGE = (-30.0, 20.0)  # diffusers' DiagonalGaussianDistribution clamp


@dataclasses.dataclass(frozen=True)
class SDVAEConfig:
    """The encoder fields of a diffusers ``AutoencoderKL`` config (defaults: SD 1.x / 2.x)."""

    in_channels: int = 3
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    latent_channels: int = 4
    norm_num_groups: int = 32
    scaling_factor: float = 0.18215
    use_quant_conv: bool = True
    mid_block_add_attention: bool = True

    @property
    def downscale(self) -> int:
        """Pixels per latent cell along each side (8 for Stable Diffusion)."""
        return 2 ** (len(self.block_out_channels) - 1)

    @classmethod
    def from_diffusers(cls, config: dict[str, Any]) -> SDVAEConfig:
        """From a diffusers ``config.json`` dict; refuses what the port does not implement."""
        name = config.get("_class_name", "AutoencoderKL")
        if name != "AutoencoderKL":
            raise ValueError(f"expected an AutoencoderKL config, got _class_name={name!r}")
        block_out = tuple(int(c) for c in config.get("block_out_channels", (64,)))
        block_types = tuple(config.get("down_block_types", ("DownEncoderBlock2D",)))
        if any(t != "DownEncoderBlock2D" for t in block_types) or len(block_types) != len(
            block_out
        ):
            raise ValueError(
                f"need one DownEncoderBlock2D per block_out_channels entry, got {block_types} "
                f"for {block_out}"
            )
        if config.get("act_fn", "silu") != "silu":
            raise ValueError(f"only act_fn 'silu' is ported, got {config['act_fn']!r}")
        if config.get("shift_factor") not in (None, 0, 0.0):
            raise ValueError("a VAE with shift_factor (SD3/Flux) is not the SD 1.x/2.x VAE")
        return cls(
            in_channels=int(config.get("in_channels", 3)),
            block_out_channels=block_out,
            layers_per_block=int(config.get("layers_per_block", 1)),
            latent_channels=int(config.get("latent_channels", 4)),
            norm_num_groups=int(config.get("norm_num_groups", 32)),
            scaling_factor=float(config.get("scaling_factor", 0.18215)),
            use_quant_conv=bool(config.get("use_quant_conv", True)),
            mid_block_add_attention=bool(config.get("mid_block_add_attention", True)),
        )


class _DownEncoderBlock(nn.Module):
    """diffusers ``DownEncoderBlock2D``: ResNets without time embedding, then (unless last) a
    stride-2 conv padded bottom/right."""

    channels: int
    layers: int
    groups: int
    downsample: bool
    dtype: Any = f32

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        for j in range(self.layers):
            h = ResnetBlock(
                self.channels, self.groups, 1e-6, dtype=self.dtype, name=f"resnets_{j}"
            )(h)
        if self.downsample:
            h = Downsample(self.channels, 0, self.dtype, name="downsamplers_0")(h)
        return h


class _MidBlock(nn.Module):
    """diffusers ``UNetMidBlock2D`` as the VAE uses it: ResNet, single-head attention, ResNet."""

    channels: int
    groups: int
    attention: bool
    dtype: Any = f32

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        c, g = self.channels, self.groups
        h = ResnetBlock(c, g, 1e-6, dtype=self.dtype, name="resnets_0")(h)
        if self.attention:
            h = Attention(1, c, c, True, g, self.dtype, name="attentions_0")(h)
        return ResnetBlock(c, g, 1e-6, dtype=self.dtype, name="resnets_1")(h)


class _Encoder(nn.Module):
    config: SDVAEConfig
    dtype: Any = f32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.config
        groups = cfg.norm_num_groups
        h = conv(cfg.block_out_channels[0], 3, self.dtype, "conv_in")(x)
        last = len(cfg.block_out_channels) - 1
        for i, channels in enumerate(cfg.block_out_channels):
            block = _DownEncoderBlock(
                channels,
                cfg.layers_per_block,
                groups,
                i < last,
                self.dtype,
                name=f"down_blocks_{i}",
            )
            h = block(h)
        top = cfg.block_out_channels[-1]
        h = _MidBlock(top, groups, cfg.mid_block_add_attention, self.dtype, name="mid_block")(h)
        h = jax.nn.silu(group_norm(groups, 1e-6, self.dtype, "conv_norm_out")(h))
        return conv(2 * cfg.latent_channels, 3, self.dtype, "conv_out")(h)


class SDVAEEncoder(nn.Module):
    """pixels [B, H, W, 3] in [-1, 1] -> (mean, logvar) [B, H/f, W/f, latent_channels], float32."""

    config: SDVAEConfig
    dtype: Any = f32

    @nn.compact
    def __call__(self, pixels: jax.Array) -> tuple[jax.Array, jax.Array]:
        f = self.config.downscale
        if pixels.shape[1] % f or pixels.shape[2] % f:
            raise ValueError(f"image sides {pixels.shape[1:3]} must be multiples of {f}")
        moments = _Encoder(self.config, self.dtype, name="encoder")(pixels.astype(self.dtype))
        if self.config.use_quant_conv:
            moments = conv(moments.shape[-1], 1, self.dtype, "quant_conv")(moments)
        mean, logvar = jnp.split(moments.astype(f32), 2, axis=-1)
        return mean, jnp.clip(logvar, *LOGVAR_RANGE)


def sample_latent(
    key: jax.Array, mean: jax.Array, logvar: jax.Array, scaling_factor: float
) -> jax.Array:
    """``latent_dist.sample() * scaling_factor``: a draw from the posterior, in the UNet's units."""
    noise = jax.random.normal(key, mean.shape, f32)
    return (mean + jnp.exp(0.5 * logvar) * noise) * scaling_factor


def init_shapes(config: SDVAEConfig) -> Any:
    """Abstract parameter tree (shapes only) for weight loading."""
    size = config.downscale
    return jax.eval_shape(
        lambda: SDVAEEncoder(config).init(jax.random.key(0), jnp.zeros((1, size, size, 3)))[
            "params"
        ]
    )
