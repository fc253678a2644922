"""diffusers' ``UNet2DConditionModel`` (Stable Diffusion 1.x / 2.x) in Flax (Linen),
channels-last: the noise prediction ε(x_t, t, c) TADPoLe's reward compares with and without text.

The network, as diffusers builds it for the SD family:
  * t -> sinusoidal embedding of ``block_out_channels[0]`` (``flip_sin_to_cos``, ``freq_shift``)
    -> Linear, SiLU, Linear (``time_embedding``), fed to every ResNet;
  * ``conv_in``; down blocks (``CrossAttnDownBlock2D``: ResNet + text transformer per layer;
    ``DownBlock2D``: ResNets only), each but the last ending in a stride-2 conv; every
    intermediate output is kept as a skip;
  * mid block: ResNet, transformer, ResNet;
  * up blocks (mirrored, one more layer each), every ResNet fed its skip concatenated on channels,
    each but the last ending in nearest 2x upsampling and a conv; GroupNorm, SiLU, ``conv_out``.
A transformer (``Transformer2DModel``) is GroupNorm, a 1x1 conv or linear ``proj_in``
(``use_linear_projection``: SD 2.x linear, SD 1.5 conv), blocks of self-attention,
cross-attention to the text and a GEGLU feed-forward (each pre-LayerNorm, residual), ``proj_out``,
plus the input. Heads per block are ``attention_head_dim`` as diffusers reads it (a head count for
this family: SD 1.5 8 everywhere, SD 2.x 5/10/20/20), the head size the channels over that.

Parameter names mirror the diffusers state dict; see ``genreward_jax.encoders.weights``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genreward_jax.encoders.sd_layers import (
    Attention,
    Downsample,
    ResnetBlock,
    Upsample,
    conv,
    group_norm,
)

f32 = jnp.float32

CROSS_DOWN, PLAIN_DOWN = "CrossAttnDownBlock2D", "DownBlock2D"
CROSS_UP, PLAIN_UP = "CrossAttnUpBlock2D", "UpBlock2D"

# Config entries that change the network away from the SD 1.x/2.x UNet, with the value that
# leaves it unchanged: a config setting any other value is refused rather than run wrongly.
_UNCHANGED = {
    "act_fn": "silu",
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "only_cross_attention": False,
    "dual_cross_attention": False,
    "class_embed_type": None,
    "addition_embed_type": None,
    "encoder_hid_dim": None,
    "time_cond_proj_dim": None,
    "time_embedding_type": "positional",
    "time_embedding_dim": None,
    "time_embedding_act_fn": None,
    "timestep_post_act": None,
    "resnet_time_scale_shift": "default",
    "resnet_skip_time_act": False,
    "resnet_out_scale_factor": 1.0,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "attention_type": "default",
    "cross_attention_norm": None,
    "transformer_layers_per_block": 1,
    "num_class_embeds": None,
    "mid_block_only_cross_attention": None,
}


@dataclasses.dataclass(frozen=True)
class SDUNetConfig:
    """The fields of a diffusers ``UNet2DConditionModel`` config the SD family uses (defaults:
    SD 2.1-base)."""

    in_channels: int = 4
    out_channels: int = 4
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    down_block_types: tuple[str, ...] = (CROSS_DOWN, CROSS_DOWN, CROSS_DOWN, PLAIN_DOWN)
    up_block_types: tuple[str, ...] = (PLAIN_UP, CROSS_UP, CROSS_UP, CROSS_UP)
    layers_per_block: int = 2
    cross_attention_dim: int = 1024
    heads: tuple[int, ...] = (5, 10, 20, 20)
    use_linear_projection: bool = True
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    downsample_padding: int = 1
    mid_block_scale_factor: float = 1.0
    center_input_sample: bool = False
    sample_size: int = 64

    def __post_init__(self):
        n = len(self.block_out_channels)
        for name in ("down_block_types", "up_block_types", "heads"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} needs one entry per block_out_channels entry ({n})")
        if set(self.down_block_types) - {CROSS_DOWN, PLAIN_DOWN}:
            raise ValueError(f"unsupported down blocks {self.down_block_types}")
        if set(self.up_block_types) - {CROSS_UP, PLAIN_UP}:
            raise ValueError(f"unsupported up blocks {self.up_block_types}")
        for channels, heads in zip(self.block_out_channels, self.heads, strict=True):
            if channels % heads:
                raise ValueError(f"{channels} channels do not split into {heads} heads")

    @property
    def downscale(self) -> int:
        """The latent sides must be multiples of this (one halving per down block but the last)."""
        return 2 ** (len(self.block_out_channels) - 1)

    @classmethod
    def from_diffusers(cls, config: dict[str, Any]) -> SDUNetConfig:
        """From a diffusers ``config.json`` dict; refuses entries the port does not implement."""
        name = config.get("_class_name", "UNet2DConditionModel")
        if name != "UNet2DConditionModel":
            raise ValueError(f"expected a UNet2DConditionModel config, got _class_name={name!r}")
        for key, value in _UNCHANGED.items():
            got = config.get(key, value)
            if isinstance(got, list) and value == 1:
                got = value if all(v == 1 for v in got) else got
            if got != value:
                raise ValueError(f"{key}={got!r} is not ported (the SD 1.x/2.x UNet has {value!r})")
        block_out = tuple(int(c) for c in config["block_out_channels"])
        heads = config.get("num_attention_heads") or config.get("attention_head_dim", 8)
        if isinstance(heads, int):
            heads = (heads,) * len(block_out)
        cross = config.get("cross_attention_dim", 1280)
        if not isinstance(cross, int):
            raise ValueError(f"per-block cross_attention_dim {cross} is not ported")
        return cls(
            in_channels=int(config.get("in_channels", 4)),
            out_channels=int(config.get("out_channels", 4)),
            block_out_channels=block_out,
            down_block_types=tuple(config["down_block_types"]),
            up_block_types=tuple(config["up_block_types"]),
            layers_per_block=int(config.get("layers_per_block", 2)),
            cross_attention_dim=int(cross),
            heads=tuple(int(h) for h in heads),
            use_linear_projection=bool(config.get("use_linear_projection", False)),
            norm_num_groups=int(config.get("norm_num_groups", 32)),
            norm_eps=float(config.get("norm_eps", 1e-5)),
            flip_sin_to_cos=bool(config.get("flip_sin_to_cos", True)),
            freq_shift=int(config.get("freq_shift", 0)),
            downsample_padding=int(config.get("downsample_padding", 1)),
            mid_block_scale_factor=float(config.get("mid_block_scale_factor", 1.0)),
            center_input_sample=bool(config.get("center_input_sample", False)),
            sample_size=int(config.get("sample_size", 64)),
        )


def timestep_embedding(
    timesteps: jax.Array, dim: int, flip_sin_to_cos: bool, freq_shift: float
) -> jax.Array:
    """diffusers ``get_timestep_embedding``: [B] -> [B, dim] sinusoids, periods up to 10^4."""
    half = dim // 2
    exponent = -math.log(10000.0) * jnp.arange(half, dtype=f32) / (half - freq_shift)
    angles = timesteps.astype(f32)[:, None] * jnp.exp(exponent)[None, :]
    sin, cos = jnp.sin(angles), jnp.cos(angles)
    emb = jnp.concatenate([cos, sin] if flip_sin_to_cos else [sin, cos], axis=-1)
    return jnp.pad(emb, ((0, 0), (0, dim % 2)))


class _FeedForward(nn.Module):
    """GEGLU feed-forward: Linear to 2·4·dim, value · GELU(gate) (exact GELU), Linear back."""

    dim: int
    dtype: Any = f32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        hidden = _GEGLU(4 * self.dim, self.dtype, name="net_0")(x)
        return nn.Dense(self.dim, dtype=self.dtype, name="net_2")(hidden)


class _GEGLU(nn.Module):
    inner: int
    dtype: Any = f32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        projected = nn.Dense(2 * self.inner, dtype=self.dtype, name="proj")(x)
        value, gate = jnp.split(projected, 2, axis=-1)
        return value * jax.nn.gelu(gate.astype(f32), approximate=False).astype(self.dtype)


class _TimestepEmbedding(nn.Module):
    """diffusers ``TimestepEmbedding``: Linear, SiLU, Linear."""

    features: int
    dtype: Any = f32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.Dense(self.features, dtype=self.dtype, name="linear_1")(x.astype(self.dtype))
        return nn.Dense(self.features, dtype=self.dtype, name="linear_2")(jax.nn.silu(x))


class _TransformerBlock(nn.Module):
    """diffusers ``BasicTransformerBlock`` (layer_norm): self-attention, cross-attention, GEGLU."""

    dim: int
    heads: int
    dtype: Any = f32

    @nn.compact
    def __call__(self, x: jax.Array, context: jax.Array) -> jax.Array:
        head_dim = self.dim // self.heads

        def norm(name: str) -> nn.LayerNorm:
            return nn.LayerNorm(1e-5, dtype=self.dtype, use_fast_variance=False, name=name)

        x = x + Attention(self.heads, head_dim, self.dim, dtype=self.dtype, name="attn1")(
            norm("norm1")(x)
        )
        x = x + Attention(self.heads, head_dim, self.dim, dtype=self.dtype, name="attn2")(
            norm("norm2")(x), context
        )
        return x + _FeedForward(self.dim, self.dtype, name="ff")(norm("norm3")(x))


class _Transformer2D(nn.Module):
    """diffusers ``Transformer2DModel`` on a feature map [B, H, W, C] with text context."""

    channels: int
    heads: int
    groups: int
    linear_projection: bool
    dtype: Any = f32

    @nn.compact
    def __call__(self, x: jax.Array, context: jax.Array) -> jax.Array:
        batch, height, width, channels = x.shape
        h = group_norm(self.groups, 1e-6, self.dtype, "norm")(x)
        if self.linear_projection:
            project_in = nn.Dense(channels, dtype=self.dtype, name="proj_in")
            project_out = nn.Dense(channels, dtype=self.dtype, name="proj_out")
        else:
            project_in = conv(channels, 1, self.dtype, "proj_in")
            project_out = conv(channels, 1, self.dtype, "proj_out")
        h = project_in(h).reshape(batch, height * width, channels)
        h = _TransformerBlock(channels, self.heads, self.dtype, name="transformer_blocks_0")(
            h, context
        )
        return x + project_out(h.reshape(x.shape))


def _resnet(
    cfg: SDUNetConfig, channels: int, dtype: Any, name: str, scale: float = 1.0
) -> ResnetBlock:
    return ResnetBlock(channels, cfg.norm_num_groups, cfg.norm_eps, scale, dtype, name=name)


def _transformer(cfg: SDUNetConfig, channels: int, heads: int, dtype: Any, j: int):
    linear = cfg.use_linear_projection
    return _Transformer2D(
        channels, heads, cfg.norm_num_groups, linear, dtype, name=f"attentions_{j}"
    )


class _DownBlock(nn.Module):
    """``CrossAttnDownBlock2D`` (`cross`) or ``DownBlock2D``; returns the output and its skips."""

    channels: int
    heads: int
    cross: bool
    downsample: bool
    config: SDUNetConfig
    dtype: Any = f32

    @nn.compact
    def __call__(self, h, temb, context) -> tuple[jax.Array, list[jax.Array]]:
        skips = []
        for j in range(self.config.layers_per_block):
            h = _resnet(self.config, self.channels, self.dtype, f"resnets_{j}")(h, temb)
            if self.cross:
                h = _transformer(self.config, self.channels, self.heads, self.dtype, j)(h, context)
            skips.append(h)
        if self.downsample:
            padding = self.config.downsample_padding
            h = Downsample(self.channels, padding, self.dtype, name="downsamplers_0")(h)
            skips.append(h)
        return h, skips


class _UpBlock(nn.Module):
    """``CrossAttnUpBlock2D`` (`cross`) or ``UpBlock2D``: each ResNet takes one skip."""

    channels: int
    heads: int
    cross: bool
    upsample: bool
    config: SDUNetConfig
    dtype: Any = f32

    @nn.compact
    def __call__(self, h, skips, temb, context) -> jax.Array:
        for j, skip in enumerate(skips):
            h = jnp.concatenate([h, skip], axis=-1)
            h = _resnet(self.config, self.channels, self.dtype, f"resnets_{j}")(h, temb)
            if self.cross:
                h = _transformer(self.config, self.channels, self.heads, self.dtype, j)(h, context)
        if self.upsample:
            h = Upsample(self.channels, self.dtype, name="upsamplers_0")(h)
        return h


class _MidBlock(nn.Module):
    """``UNetMidBlock2DCrossAttn``: ResNet, transformer, ResNet."""

    channels: int
    heads: int
    config: SDUNetConfig
    dtype: Any = f32

    @nn.compact
    def __call__(self, h, temb, context) -> jax.Array:
        cfg, scale = self.config, self.config.mid_block_scale_factor
        h = _resnet(cfg, self.channels, self.dtype, "resnets_0", scale)(h, temb)
        h = _transformer(cfg, self.channels, self.heads, self.dtype, 0)(h, context)
        return _resnet(cfg, self.channels, self.dtype, "resnets_1", scale)(h, temb)


class SDUNet(nn.Module):
    """(sample [B, h, w, C], timesteps [B] or [], context [B, L, D]) -> ε [B, h, w, C], float32."""

    config: SDUNetConfig
    dtype: Any = f32

    @nn.compact
    def __call__(self, sample: jax.Array, timesteps: jax.Array, context: jax.Array) -> jax.Array:
        cfg = self.config
        f = cfg.downscale
        if sample.shape[1] % f or sample.shape[2] % f:
            raise ValueError(f"latent sides {sample.shape[1:3]} must be multiples of {f}")
        timesteps = jnp.broadcast_to(jnp.asarray(timesteps), sample.shape[:1])
        c0 = cfg.block_out_channels[0]
        temb = timestep_embedding(timesteps, c0, cfg.flip_sin_to_cos, cfg.freq_shift)
        temb = _TimestepEmbedding(4 * c0, self.dtype, name="time_embedding")(temb)
        context = context.astype(self.dtype)
        h = sample.astype(self.dtype)
        if cfg.center_input_sample:
            h = 2 * h - 1.0
        h = conv(c0, 3, self.dtype, "conv_in")(h)
        skips = [h]
        last = len(cfg.block_out_channels) - 1
        for i, (channels, kind) in enumerate(
            zip(cfg.block_out_channels, cfg.down_block_types, strict=True)
        ):
            block = _DownBlock(
                channels,
                cfg.heads[i],
                kind == CROSS_DOWN,
                i < last,
                cfg,
                self.dtype,
                name=f"down_blocks_{i}",
            )
            h, block_skips = block(h, temb, context)
            skips.extend(block_skips)
        h = _MidBlock(cfg.block_out_channels[-1], cfg.heads[-1], cfg, self.dtype, name="mid_block")(
            h, temb, context
        )
        up_channels = cfg.block_out_channels[::-1]
        up_heads = cfg.heads[::-1]
        per_block = cfg.layers_per_block + 1
        for i, (channels, kind) in enumerate(zip(up_channels, cfg.up_block_types, strict=True)):
            block_skips, skips = skips[-per_block:][::-1], skips[:-per_block]
            block = _UpBlock(
                channels,
                up_heads[i],
                kind == CROSS_UP,
                i < last,
                cfg,
                self.dtype,
                name=f"up_blocks_{i}",
            )
            h = block(h, block_skips, temb, context)
        h = jax.nn.silu(
            group_norm(cfg.norm_num_groups, cfg.norm_eps, self.dtype, "conv_norm_out")(h)
        )
        return conv(cfg.out_channels, 3, self.dtype, "conv_out")(h).astype(f32)


def init_shapes(config: SDUNetConfig) -> Any:
    """Abstract parameter tree (shapes only) for weight loading."""
    f = config.downscale
    sample = jnp.zeros((1, f, f, config.in_channels))
    context = jnp.zeros((1, 1, config.cross_attention_dim))
    return jax.eval_shape(
        lambda: SDUNet(config).init(jax.random.key(0), sample, jnp.zeros(()), context)["params"]
    )
