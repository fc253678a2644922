"""Encoder half of diffusers' `AutoencoderKLCogVideoX` in Flax (Linen), channels-last.

The goal latents are produced offline by diffusers' `AutoencoderKLCogVideoX.encode()`, so the online
stage must reproduce that call exactly, not just the network. In diffusers 0.42.1 `encode()`
(tiling and slicing off) splits the frames into chunks -- the first `8 + T % 8` frames, then 8 at a
time (`num_batches = max(T // 8, 1)`) -- and runs the encoder once per chunk, carrying a causal
conv cache (the last two time steps seen by every 3x3x3 causal conv) from chunk to chunk.

Two consequences matter and both are reproduced here:
- GroupNorm statistics are taken per chunk (and per sample), not over the whole video.
- The time downsampling (keep frame 0 of an odd-length input, average the rest in pairs) is applied
  to each chunk separately.
Everything else (causal convs with the carried cache, per-frame spatial convs) gives the same result
as one pass over the whole video. `CogVideoXVAEEncoder.__call__` therefore runs the whole video in
one pass with chunk-aware GroupNorm and time downsampling ("segments" = the chunk lengths at the
current time resolution): big convolutions, no sequential dependency between chunks.
`encode_chunked` runs the literal diffusers loop (one chunk at a time, conv cache carried) with the
same parameters; the tests check both against diffusers. It is also the way to encode a video
incrementally.

Parameter names mirror the diffusers state dict (`encoder.down_blocks_0.resnets_1.conv1.conv.kernel`
for `encoder.down_blocks.0.resnets.1.conv1.conv.weight`); see `genreward_jax.encoders.weights`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

f32 = jnp.float32

FRAME_BATCH_SIZE = 8  # diffusers' `num_sample_frames_batch_size`
TIME_KERNEL = 3  # every causal conv of the encoder is 3x3x3
LOGVAR_RANGE = (-30.0, 20.0)  # clamp applied by diffusers' DiagonalGaussianDistribution

Segments = tuple[int, ...]
ConvCache = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class VAEEncoderConfig:
    """The encoder-relevant fields of a diffusers `AutoencoderKLCogVideoX` config.

    Defaults are the CogVideoX-5B(-I2V) VAE.
    """

    in_channels: int = 3
    out_channels: int = 3
    block_out_channels: tuple[int, ...] = (128, 256, 256, 512)
    layers_per_block: int = 3
    latent_channels: int = 16
    norm_num_groups: int = 32
    norm_eps: float = 1e-6
    act_fn: str = "silu"
    temporal_compression_ratio: int = 4
    use_quant_conv: bool = False
    scaling_factor: float = 0.7

    def __post_init__(self) -> None:
        for channels in self.block_out_channels:
            if channels % self.norm_num_groups:
                raise ValueError(
                    f"block_out_channels {self.block_out_channels} must be divisible by "
                    f"norm_num_groups={self.norm_num_groups}"
                )
        if self.act_fn not in _ACTIVATIONS:
            raise ValueError(f"unsupported act_fn {self.act_fn!r}; known: {sorted(_ACTIVATIONS)}")
        if self.use_quant_conv and self.out_channels != self.latent_channels:
            # diffusers builds quant_conv with 2*out_channels inputs but feeds it 2*latent_channels.
            raise ValueError(
                "use_quant_conv needs out_channels == latent_channels (got "
                f"{self.out_channels} and {self.latent_channels}); diffusers fails the same way"
            )

    @property
    def temporal_compress_level(self) -> int:
        return int(np.log2(self.temporal_compression_ratio))

    @classmethod
    def from_diffusers(cls, config: dict[str, Any]) -> VAEEncoderConfig:
        """Build from a diffusers `config.json` dict (unknown and decoder-only keys are ignored)."""
        name = config.get("_class_name", config.get("model_type", "AutoencoderKLCogVideoX"))
        if name != "AutoencoderKLCogVideoX":
            raise ValueError(f"expected an AutoencoderKLCogVideoX config, got _class_name={name!r}")
        block_types = tuple(config.get("down_block_types", ("CogVideoXDownBlock3D",) * 4))
        if any(t != "CogVideoXDownBlock3D" for t in block_types):
            raise ValueError(f"only CogVideoXDownBlock3D down blocks exist, got {block_types}")
        block_out = tuple(int(c) for c in config.get("block_out_channels", cls.block_out_channels))
        if len(block_types) != len(block_out):
            raise ValueError(
                f"down_block_types ({len(block_types)}) and block_out_channels ({len(block_out)}) "
                "must have the same length"
            )
        defaults = cls()
        return cls(
            in_channels=int(config.get("in_channels", 3)),
            out_channels=int(config.get("out_channels", 3)),
            block_out_channels=block_out,
            layers_per_block=int(config.get("layers_per_block", defaults.layers_per_block)),
            latent_channels=int(config.get("latent_channels", defaults.latent_channels)),
            norm_num_groups=int(config.get("norm_num_groups", defaults.norm_num_groups)),
            norm_eps=float(config.get("norm_eps", defaults.norm_eps)),
            act_fn=str(config.get("act_fn", defaults.act_fn)),
            temporal_compression_ratio=int(config.get("temporal_compression_ratio", 4)),
            use_quant_conv=bool(config.get("use_quant_conv", False)),
            scaling_factor=float(config.get("scaling_factor", 1.15258426)),
        )


_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "mish": lambda x: x * jnp.tanh(jax.nn.softplus(x)),
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "relu": jax.nn.relu,
}


def chunk_lengths(num_frames: int, frame_batch_size: int = FRAME_BATCH_SIZE) -> Segments:
    """Frame counts of the chunks diffusers' `_encode` feeds the encoder, in order.

    17 -> (9, 8); 16 -> (8, 8); 9 -> (9,); 5 -> (5,); 49 -> (9, 8, 8, 8, 8, 8).
    """
    if num_frames < 1:
        raise ValueError(f"need at least one frame, got {num_frames}")
    num_batches = max(num_frames // frame_batch_size, 1)
    remainder = num_frames % frame_batch_size
    first = min(frame_batch_size + remainder, num_frames)
    return (first,) + (frame_batch_size,) * (num_batches - 1)


def compressed_segments(segments: Segments) -> Segments:
    """Chunk lengths after one time downsampling: odd L -> 1 + (L - 1) // 2, even L -> L // 2."""
    return tuple(1 + (n - 1) // 2 if n % 2 else n // 2 for n in segments)


def latent_frames(num_frames: int, config: VAEEncoderConfig) -> int:
    """Latent frames `encode()` returns for `num_frames` input frames (17 -> 5, 16 -> 4)."""
    segments = chunk_lengths(num_frames)
    for _ in range(min(config.temporal_compress_level, len(config.block_out_channels) - 1)):
        segments = compressed_segments(segments)
    return sum(segments)


def video_to_vae_input(frames: jax.Array) -> jax.Array:
    """uint8 frames [..., H, W, 3] -> float32 in [-1, 1], as diffusers' VideoProcessor does."""
    return jnp.asarray(frames, f32) / 255.0 * 2.0 - 1.0


def latent_mean_fn(vae: Any) -> Callable[[jax.Array], jax.Array]:
    """uint8 clips [N, K, H, W, 3] -> posterior-mean latents [N, T', h, w, C] of a loaded encoder
    (``weights.load_vae_encoder``). Pure and not jitted: callers jit it inside their own step."""
    return lambda clips: vae.apply(vae.params, video_to_vae_input(clips))[0]


def _time_compress_indices(segments: Segments) -> tuple[np.ndarray, np.ndarray]:
    """Static frame pairs (a, b) averaged into each output frame; a kept frame pairs with itself."""
    first, second = [], []
    start = 0
    for n in segments:
        frames = list(range(start, start + n))
        if n % 2:
            first.append(frames[0])
            second.append(frames[0])
            frames = frames[1:]
        first.extend(frames[0::2])
        second.extend(frames[1::2])
        start += n
    return np.asarray(first), np.asarray(second)


class ChunkGroupNorm(nn.Module):
    """GroupNorm whose statistics are per sample, per group and per chunk (`segments`).

    Statistics are two-pass in float32 (Flax's fast variance loses precision at large offsets).
    """

    num_groups: int
    eps: float
    dtype: Any = f32

    @nn.compact
    def __call__(self, x: jax.Array, segments: Segments) -> jax.Array:
        # x: [B, T, H, W, C]
        batch, frames, height, width, channels = x.shape
        if sum(segments) != frames:
            raise ValueError(f"segments {segments} do not cover {frames} frames")
        scale = self.param("scale", nn.initializers.ones, (channels,), f32)
        bias = self.param("bias", nn.initializers.zeros, (channels,), f32)
        groups = self.num_groups
        xg = x.astype(f32).reshape(batch, frames, height, width, groups, channels // groups)
        segment_ids = np.repeat(np.arange(len(segments)), segments)
        per_frame = height * width * (channels // groups)
        counts = np.asarray(segments, np.float32)[:, None, None] * per_frame

        def per_segment_mean(values: jax.Array) -> jax.Array:
            # [B, T, H, W, G, Cg] -> frame sums [T, B, G] -> segment means, broadcast back to frames
            frame_sums = jnp.sum(values, axis=(2, 3, 5)).transpose(1, 0, 2)
            sums = jax.ops.segment_sum(
                frame_sums, segment_ids, num_segments=len(segments), indices_are_sorted=True
            )
            return (sums / counts)[segment_ids].transpose(1, 0, 2)[:, :, None, None, :, None]

        mean = per_segment_mean(xg)
        centered = xg - mean
        var = per_segment_mean(jnp.square(centered))
        y = (centered * jax.lax.rsqrt(var + self.eps)).reshape(x.shape)
        return (y * scale + bias).astype(self.dtype)


def resolve_conv_impl(conv_impl: str) -> str:
    """'auto' -> 'taps2d' on CPU (XLA's CPU 3-D convolution is ~2x slower than three 2-D ones),
    'conv3d' elsewhere (one cuDNN / TPU convolution)."""
    if conv_impl == "auto":
        return "taps2d" if jax.default_backend() == "cpu" else "conv3d"
    if conv_impl not in ("conv3d", "taps2d"):
        raise ValueError(f"conv_impl must be 'auto', 'conv3d' or 'taps2d', got {conv_impl!r}")
    return conv_impl


class TimeConv(nn.Module):
    """A valid-in-time, 'same'-in-space 3x3x3 convolution with Flax Conv's parameter layout
    (kernel [3, 3, 3, I, O], bias [O]), computed as one 3-D convolution or as the sum of one 2-D
    convolution per time tap (frames folded into the batch)."""

    features: int
    conv_impl: str = "auto"
    dtype: Any = f32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        # x: [B, T + 2, H, W, C] -> [B, T, H, W, features]
        kernel_shape = (TIME_KERNEL, 3, 3, x.shape[-1], self.features)
        kernel = self.param("kernel", nn.initializers.lecun_normal(), kernel_shape, f32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), f32)
        x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
        batch, frames, height, width, channels = x.shape
        out_frames = frames - TIME_KERNEL + 1
        if resolve_conv_impl(self.conv_impl) == "conv3d":
            y = jax.lax.conv_general_dilated(
                x,
                kernel,
                (1, 1, 1),
                ((0, 0), (1, 1), (1, 1)),
                dimension_numbers=("NDHWC", "DHWIO", "NDHWC"),
            )
        else:  # the three taps are summed in float32, as one convolution would accumulate them
            y = (
                sum(
                    jax.lax.conv_general_dilated(
                        x[:, tap : tap + out_frames].reshape(-1, height, width, channels),
                        kernel[tap],
                        (1, 1),
                        ((1, 1), (1, 1)),
                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                        preferred_element_type=f32,
                    )
                    for tap in range(TIME_KERNEL)
                )
                .reshape(batch, out_frames, height, width, self.features)
                .astype(self.dtype)
            )
        return y + bias.astype(self.dtype)


class CausalConv3d(nn.Module):
    """3x3x3 conv, causal in time: pads with the carried cache, or by repeating the first frame."""

    features: int
    conv_impl: str = "auto"
    dtype: Any = f32

    @nn.compact
    def __call__(self, x: jax.Array, cache: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        # x: [B, T, H, W, C]; cache: [B, 2, H, W, C] (the previous chunk's last padded inputs)
        if cache is None:
            past = jnp.repeat(x[:, :1], TIME_KERNEL - 1, axis=1)
        else:
            past = cache.astype(x.dtype)
        padded = jnp.concatenate([past, x], axis=1)
        conv = TimeConv(self.features, self.conv_impl, self.dtype, name="conv")
        return conv(padded), padded[:, -(TIME_KERNEL - 1) :]


class ResnetBlock3D(nn.Module):
    out_channels: int
    groups: int
    eps: float
    act_fn: str
    conv_impl: str = "auto"
    dtype: Any = f32

    @nn.compact
    def __call__(
        self, x: jax.Array, segments: Segments, cache: ConvCache | None
    ) -> tuple[jax.Array, ConvCache]:
        cache = cache or {}
        act = _ACTIVATIONS[self.act_fn]
        h = act(ChunkGroupNorm(self.groups, self.eps, self.dtype, name="norm1")(x, segments))
        conv1 = CausalConv3d(self.out_channels, self.conv_impl, self.dtype, name="conv1")
        h, cache1 = conv1(h, cache.get("conv1"))
        h = act(ChunkGroupNorm(self.groups, self.eps, self.dtype, name="norm2")(h, segments))
        conv2 = CausalConv3d(self.out_channels, self.conv_impl, self.dtype, name="conv2")
        h, cache2 = conv2(h, cache.get("conv2"))
        if x.shape[-1] != self.out_channels:
            shortcut = nn.Conv(
                self.out_channels,
                (1, 1, 1),
                padding="VALID",
                dtype=self.dtype,
                name="conv_shortcut",
            )
            x = shortcut(x)
        return h + x.astype(h.dtype), {"conv1": cache1, "conv2": cache2}


class Downsample3D(nn.Module):
    """Optional per-chunk time halving, then pad right/bottom by one and a stride-2 3x3 conv."""

    features: int
    compress_time: bool
    dtype: Any = f32

    @nn.compact
    def __call__(self, x: jax.Array, segments: Segments) -> tuple[jax.Array, Segments]:
        if self.compress_time:
            first, second = _time_compress_indices(segments)
            x = (x[:, first] + x[:, second]) * 0.5
            segments = compressed_segments(segments)
        x = jnp.pad(x, ((0, 0), (0, 0), (0, 1), (0, 1), (0, 0)))
        conv = nn.Conv(
            self.features, (3, 3), strides=(2, 2), padding="VALID", dtype=self.dtype, name="conv"
        )
        return conv(x), segments


def run_resnets(
    resnets: list[ResnetBlock3D], x: jax.Array, segments: Segments, cache: ConvCache | None
) -> tuple[jax.Array, ConvCache]:
    """A block's ResNets in order, each with its slice of the carried conv cache
    (``resnet_<i>``); the down and mid blocks share this loop."""
    cache = cache or {}
    new_cache = {}
    for i, resnet in enumerate(resnets):
        x, new_cache[f"resnet_{i}"] = resnet(x, segments, cache.get(f"resnet_{i}"))
    return x, new_cache


class DownBlock3D(nn.Module):
    out_channels: int
    num_layers: int
    groups: int
    eps: float
    act_fn: str
    add_downsample: bool
    compress_time: bool
    conv_impl: str = "auto"
    dtype: Any = f32

    def setup(self) -> None:
        self.resnets = [
            ResnetBlock3D(
                self.out_channels, self.groups, self.eps, self.act_fn, self.conv_impl, self.dtype
            )
            for _ in range(self.num_layers)
        ]
        if self.add_downsample:
            self.downsamplers = [Downsample3D(self.out_channels, self.compress_time, self.dtype)]

    def __call__(
        self, x: jax.Array, segments: Segments, cache: ConvCache | None
    ) -> tuple[jax.Array, Segments, ConvCache]:
        x, new_cache = run_resnets(self.resnets, x, segments, cache)
        if self.add_downsample:
            x, segments = self.downsamplers[0](x, segments)
        return x, segments, new_cache


class MidBlock3D(nn.Module):
    channels: int
    groups: int
    eps: float
    act_fn: str
    conv_impl: str = "auto"
    dtype: Any = f32

    def setup(self) -> None:
        self.resnets = [
            ResnetBlock3D(
                self.channels, self.groups, self.eps, self.act_fn, self.conv_impl, self.dtype
            )
            for _ in range(2)
        ]

    def __call__(
        self, x: jax.Array, segments: Segments, cache: ConvCache | None
    ) -> tuple[jax.Array, ConvCache]:
        return run_resnets(self.resnets, x, segments, cache)


class Encoder3D(nn.Module):
    """`CogVideoXEncoder3D`: conv_in, down blocks, mid block, norm_out, SiLU, conv_out."""

    config: VAEEncoderConfig
    conv_impl: str = "auto"
    dtype: Any = f32

    def setup(self) -> None:
        cfg = self.config
        channels = cfg.block_out_channels
        self.conv_in = CausalConv3d(channels[0], self.conv_impl, self.dtype)
        self.down_blocks = [
            DownBlock3D(
                out_channels=out,
                num_layers=cfg.layers_per_block,
                groups=cfg.norm_num_groups,
                eps=cfg.norm_eps,
                act_fn=cfg.act_fn,
                add_downsample=i < len(channels) - 1,
                compress_time=i < cfg.temporal_compress_level,
                conv_impl=self.conv_impl,
                dtype=self.dtype,
            )
            for i, out in enumerate(channels)
        ]
        self.mid_block = MidBlock3D(
            channels[-1], cfg.norm_num_groups, cfg.norm_eps, cfg.act_fn, self.conv_impl, self.dtype
        )
        # diffusers hard-codes eps=1e-6 and SiLU here, whatever norm_eps and act_fn say.
        self.norm_out = ChunkGroupNorm(cfg.norm_num_groups, 1e-6, self.dtype)
        self.conv_out = CausalConv3d(2 * cfg.latent_channels, self.conv_impl, self.dtype)

    def __call__(
        self, x: jax.Array, segments: Segments, cache: ConvCache | None
    ) -> tuple[jax.Array, ConvCache]:
        # x: [B, T, H, W, C_in] -> moments [B, T', H/2^k, W/2^k, 2 * latent_channels]
        cache = cache or {}
        new_cache = {}
        x, new_cache["conv_in"] = self.conv_in(x.astype(self.dtype), cache.get("conv_in"))
        for i, block in enumerate(self.down_blocks):
            x, segments, new_cache[f"down_block_{i}"] = block(
                x, segments, cache.get(f"down_block_{i}")
            )
        x, new_cache["mid_block"] = self.mid_block(x, segments, cache.get("mid_block"))
        x = jax.nn.silu(self.norm_out(x, segments))
        x, new_cache["conv_out"] = self.conv_out(x, cache.get("conv_out"))
        return x, new_cache


class CogVideoXVAEEncoder(nn.Module):
    """What `AutoencoderKLCogVideoX.encode()` computes, returning the posterior's mean and logvar.

    `dtype` is the compute dtype (parameters are cast to it per layer; GroupNorm statistics stay
    float32). Outputs are float32. `conv_impl` picks how the 3x3x3 convolutions run (see
    `resolve_conv_impl`); all give the same result up to float rounding.
    """

    config: VAEEncoderConfig
    dtype: Any = f32
    conv_impl: str = "auto"

    def setup(self) -> None:
        self.encoder = Encoder3D(self.config, self.conv_impl, self.dtype)
        if self.config.use_quant_conv:
            channels = 2 * self.config.latent_channels
            self.quant_conv = nn.Conv(channels, (1, 1, 1), padding="VALID", dtype=self.dtype)

    def __call__(self, video: jax.Array) -> tuple[jax.Array, jax.Array]:
        """video [B, T, H, W, C_in] in [-1, 1] -> (mean, logvar), each [B, T', H', W', latent].

        One pass over all frames with diffusers' chunking applied to GroupNorm and time
        downsampling; equal to diffusers' chunk-by-chunk loop (see module docstring).
        """
        _check_video(video, self.config)
        moments, _ = self.encoder(video, chunk_lengths(video.shape[1]), None)
        return self._posterior(moments)

    def encode_chunk(
        self, chunk: jax.Array, cache: ConvCache | None
    ) -> tuple[jax.Array, jax.Array, ConvCache]:
        """One step of diffusers' loop: chunk [B, t, H, W, C_in] plus the previous chunk's cache
        (None for the first chunk) -> (mean, logvar, cache for the next chunk)."""
        _check_video(chunk, self.config)
        moments, cache = self.encoder(chunk, (chunk.shape[1],), cache)
        return (*self._posterior(moments), cache)

    def _posterior(self, moments: jax.Array) -> tuple[jax.Array, jax.Array]:
        if self.config.use_quant_conv:
            moments = self.quant_conv(moments)
        moments = moments.astype(f32)
        mean, logvar = jnp.split(moments, 2, axis=-1)
        return mean, jnp.clip(logvar, *LOGVAR_RANGE)


def _check_video(video: jax.Array, config: VAEEncoderConfig) -> None:
    if video.ndim != 5 or video.shape[-1] != config.in_channels:
        raise ValueError(
            f"expected video [B, T, H, W, {config.in_channels}] (channels-last), got {video.shape}"
        )


def encode_chunked(
    module: CogVideoXVAEEncoder, params: Any, video: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """diffusers' `_encode` loop literally: chunk by chunk, carrying the causal conv cache.

    Same result as `module.apply({"params": params}, video)`; jit the caller, not this.
    """
    means, logvars = [], []
    cache = None
    start = 0
    for length in chunk_lengths(video.shape[1]):
        chunk = video[:, start : start + length]
        mean, logvar, cache = module.apply(
            {"params": params}, chunk, cache, method=CogVideoXVAEEncoder.encode_chunk
        )
        means.append(mean)
        logvars.append(logvar)
        start += length
    return jnp.concatenate(means, axis=1), jnp.concatenate(logvars, axis=1)


def init_shapes(config: VAEEncoderConfig) -> Any:
    """Abstract parameter tree ({name: ShapeDtypeStruct}) of `CogVideoXVAEEncoder(config)`."""
    size = 2 ** len(config.block_out_channels)
    dummy = jax.ShapeDtypeStruct((1, 1, size, size, config.in_channels), f32)
    module = CogVideoXVAEEncoder(config)
    return jax.eval_shape(lambda x: module.init(jax.random.PRNGKey(0), x), dummy)["params"]


__all__ = (
    "CogVideoXVAEEncoder",
    "VAEEncoderConfig",
    "chunk_lengths",
    "encode_chunked",
    "latent_frames",
    "video_to_vae_input",
)
