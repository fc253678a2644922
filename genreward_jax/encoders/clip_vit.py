"""open_clip's ViT image tower (``open_clip.transformer.VisionTransformer``, eval mode) in Flax.

VLM-RM scores each frame by its CLIP image embedding, online, so the image tower must run in JAX;
the text side (goal and baseline prompts) is embedded once, offline, by open_clip itself. This
follows open_clip 3.3 step by step for the plain ViT configs (OpenAI CLIP and the LAION
ViT-B/L/H/g models): a stride-p patch convolution without bias, [CLS, patches] tokens plus
learned positions, ``ln_pre``, pre-norm residual blocks (``nn.MultiheadAttention``, MLP with
GELU or QuickGELU, optional LayerScale), ``ln_post`` on the pooled token, then ``proj``.
Configurations it does not implement (attentional pooling, the custom block's extra norms,
sin-cos positions, timm or ResNet towers) are refused by ``CLIPVisionConfig`` with their name.

Parameter names mirror the open_clip state dict without its ``visual.`` prefix
(``transformer.resblocks_3.attn.in_proj_weight`` for
``visual.transformer.resblocks.3.attn.in_proj_weight``); the attention's packed in-projection
keeps PyTorch's [3W, W] layout, so the weights load without reshuffling.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

f32 = jnp.float32

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_UNSUPPORTED = {  # open_clip vision_cfg key -> the value our port implements
    "attentional_pool": False,
    "timm_model_name": None,
    "pos_embed_type": "learnable",
    "block_type": None,
    "qk_norm": False,
    "scaled_cosine_attn": False,
    "scale_heads": False,
    "scale_attn_inner": False,
    "scale_attn": False,
    "scale_fc": False,
    "act_kwargs": None,
}


@dataclasses.dataclass(frozen=True)
class CLIPVisionConfig:
    """The inference-relevant fields of an open_clip model config's vision tower.

    Defaults are ViT-B-32 (``open_clip/model_configs/ViT-B-32.json``)."""

    image_size: int = 224
    patch_size: int = 32
    width: int = 768
    layers: int = 12
    head_width: int = 64
    mlp_ratio: float = 4.0
    output_dim: int = 512  # the model's embed_dim
    ls_init_value: float | None = None  # LayerScale present when set
    no_ln_pre: bool = False
    pool_type: str = "tok"
    final_ln_after_pool: bool = False
    quick_gelu: bool = False  # OpenAI's own checkpoints were trained with QuickGELU
    layer_norm_eps: float = 1e-5
    mean: tuple[float, ...] = OPENAI_MEAN
    std: tuple[float, ...] = OPENAI_STD

    def __post_init__(self) -> None:
        if self.width % self.head_width:
            raise ValueError(f"width {self.width} not divisible by head_width {self.head_width}")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} not divisible by patch_size {self.patch_size}"
            )
        if self.pool_type not in ("tok", "avg"):
            raise ValueError(f"pool_type must be 'tok' or 'avg', got {self.pool_type!r}")

    @property
    def heads(self) -> int:
        return self.width // self.head_width

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @classmethod
    def from_open_clip(
        cls, model_cfg: dict[str, Any], preprocess_cfg: dict[str, Any] | None = None
    ) -> CLIPVisionConfig:
        """From an open_clip model config (``model_configs/<name>.json``, or ``model_cfg`` of a
        hub ``open_clip_config.json``) and optionally its ``preprocess_cfg``."""
        vision = dict(model_cfg.get("vision_cfg", {}))
        if isinstance(vision.get("layers"), list | tuple):
            raise ValueError("ResNet image towers (vision_cfg.layers as a list) are not supported")
        for key, supported in _UNSUPPORTED.items():
            if vision.get(key, supported) not in (supported, "", {}):
                raise ValueError(
                    f"open_clip vision_cfg.{key}={vision[key]!r} is not supported "
                    f"by the Flax port (only {supported!r})"
                )
        size = vision.get("image_size", 224)
        patch = vision.get("patch_size", 16)
        if isinstance(size, list | tuple) or isinstance(patch, list | tuple):
            if len({*np.atleast_1d(size)}) != 1 or len({*np.atleast_1d(patch)}) != 1:
                raise ValueError(f"non-square images or patches are not supported: {size}, {patch}")
            size, patch = int(np.atleast_1d(size)[0]), int(np.atleast_1d(patch)[0])
        norm = vision.get("norm_kwargs") or {}
        pre = preprocess_cfg or {}
        return cls(
            image_size=int(size),
            patch_size=int(patch),
            width=int(vision.get("width", 768)),
            layers=int(vision.get("layers", 12)),
            head_width=int(vision.get("head_width", 64)),
            mlp_ratio=float(vision.get("mlp_ratio", 4.0)),
            output_dim=int(model_cfg.get("embed_dim", 512)),
            ls_init_value=vision.get("ls_init_value"),
            no_ln_pre=bool(vision.get("no_ln_pre", False)),
            pool_type=vision.get("pool_type", "tok"),
            final_ln_after_pool=bool(vision.get("final_ln_after_pool", False)),
            quick_gelu=bool(model_cfg.get("quick_gelu", False)),
            layer_norm_eps=float(norm.get("eps", 1e-5)),
            mean=tuple(pre.get("mean", OPENAI_MEAN)),
            std=tuple(pre.get("std", OPENAI_STD)),
        )


def _layer_norm(config: CLIPVisionConfig, name: str) -> nn.LayerNorm:
    # open_clip computes LayerNorm in the input dtype; float32 statistics are never worse.
    return nn.LayerNorm(epsilon=config.layer_norm_eps, dtype=f32, name=name)


class MultiheadAttention(nn.Module):
    """torch ``nn.MultiheadAttention`` (batch first, no mask) with its packed in-projection."""

    config: CLIPVisionConfig
    dtype: Any = f32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.config
        w = cfg.width
        weight = self.param("in_proj_weight", nn.initializers.lecun_normal(), (3 * w, w))
        bias = self.param("in_proj_bias", nn.initializers.zeros, (3 * w,))
        qkv = jnp.einsum("bnw,ow->bno", x.astype(self.dtype), weight.astype(self.dtype)) + bias
        b, n, _ = x.shape
        q, k, v = (t.reshape(b, n, cfg.heads, cfg.head_width) for t in jnp.split(qkv, 3, -1))
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(cfg.head_width)
        probs = jax.nn.softmax(logits.astype(f32), -1).astype(self.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, n, w)
        return nn.Dense(w, dtype=self.dtype, name="out_proj")(out)


class MLP(nn.Module):
    """c_fc -> GELU (exact, or QuickGELU x·σ(1.702x)) -> c_proj."""

    config: CLIPVisionConfig
    dtype: Any = f32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.config
        h = nn.Dense(int(cfg.width * cfg.mlp_ratio), dtype=self.dtype, name="c_fc")(x)
        h = h * jax.nn.sigmoid(1.702 * h) if cfg.quick_gelu else jax.nn.gelu(h, approximate=False)
        return nn.Dense(cfg.width, dtype=self.dtype, name="c_proj")(h)


class LayerScale(nn.Module):
    width: int
    init_value: float

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return x * self.param("gamma", nn.initializers.constant(self.init_value), (self.width,))


class ResidualAttentionBlock(nn.Module):
    config: CLIPVisionConfig
    dtype: Any = f32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.config

        def scaled(y: jax.Array, name: str) -> jax.Array:
            if cfg.ls_init_value is None:
                return y
            return LayerScale(cfg.width, cfg.ls_init_value, name=name)(y)

        attn = MultiheadAttention(cfg, self.dtype, name="attn")(_layer_norm(cfg, "ln_1")(x))
        x = x + scaled(attn, "ls_1")
        h = MLP(cfg, self.dtype, name="mlp")(_layer_norm(cfg, "ln_2")(x))
        return x + scaled(h, "ls_2")


class Transformer(nn.Module):
    config: CLIPVisionConfig
    dtype: Any = f32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i in range(self.config.layers):
            x = ResidualAttentionBlock(self.config, self.dtype, name=f"resblocks_{i}")(x)
        return x


class CLIPVisionTower(nn.Module):
    """pixels [B, S, S, 3] (normalised, see ``preprocess_images``) -> image embedding [B, D]
    (not L2-normalised, as ``model.encode_image`` returns it)."""

    config: CLIPVisionConfig
    dtype: Any = f32

    @nn.compact
    def __call__(self, pixels: jax.Array) -> jax.Array:
        cfg = self.config
        p = cfg.patch_size
        x = nn.Conv(
            cfg.width,
            (p, p),
            strides=(p, p),
            padding="VALID",
            use_bias=False,
            dtype=self.dtype,
            name="conv1",
        )(pixels.astype(self.dtype))
        b = x.shape[0]
        x = x.reshape(b, -1, cfg.width)
        cls = self.param("class_embedding", nn.initializers.normal(cfg.width**-0.5), (cfg.width,))
        pos = self.param(
            "positional_embedding",
            nn.initializers.normal(cfg.width**-0.5),
            (cfg.grid**2 + 1, cfg.width),
        )
        x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (b, 1, cfg.width)), x], 1)
        x = x + pos.astype(x.dtype)
        if not cfg.no_ln_pre:
            x = _layer_norm(cfg, "ln_pre")(x)
        x = Transformer(cfg, self.dtype, name="transformer")(x)
        if not cfg.final_ln_after_pool:
            x = _layer_norm(cfg, "ln_post")(x)
        pooled = x[:, 0] if cfg.pool_type == "tok" else x[:, 1:].mean(1)
        if cfg.final_ln_after_pool:
            pooled = _layer_norm(cfg, "ln_post")(pooled)
        proj = self.param(
            "proj", nn.initializers.normal(cfg.width**-0.5), (cfg.width, cfg.output_dim)
        )
        return pooled.astype(f32) @ proj.astype(f32)


def preprocess_images(frames: jax.Array, config: CLIPVisionConfig) -> jax.Array:
    """uint8 frames [B, H, W, 3] (square renders) -> normalised pixels [B, S, S, 3]: bicubic
    resize with antialiasing to the tower's size, scale to [0, 1], the checkpoint's mean/std.
    (open_clip resizes a PIL image; on a square frame that is the same resize up to PIL's
    bicubic kernel, a difference of the order of one grey level.)"""
    size = config.image_size
    x = frames.astype(f32) / 255.0
    if x.shape[1:3] != (size, size):
        x = jax.image.resize(x, (x.shape[0], size, size, 3), "bicubic", antialias=True)
    x = jnp.clip(x, 0.0, 1.0)
    return (x - jnp.asarray(config.mean)) / jnp.asarray(config.std)


def init_shapes(config: CLIPVisionConfig) -> Any:
    """Abstract parameter tree (shapes only) for weight loading."""
    size = config.image_size
    return jax.eval_shape(
        lambda: CLIPVisionTower(config).init(jax.random.key(0), jnp.zeros((1, size, size, 3)))[
            "params"
        ]
    )
