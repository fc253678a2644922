"""transformers' `DINOv3ViTModel` (eval mode) in Flax (Linen), plus its image preprocessing in JAX.

The goal features come from the PyTorch model, so this follows transformers 5.24
`models/dinov3_vit` step by step: patch embedding, [CLS, registers, patches] tokens, pre-norm
blocks with 2-D RoPE on the patch tokens only, LayerScale, SwiGLU or plain MLP, final LayerNorm.
Eval mode only: RoPE coordinates are never jittered, dropout and drop-path are off.

Parameter names mirror the transformers state dict (`model.layer_3.attention.q_proj.kernel` for
`model.layer.3.attention.q_proj.weight`); see `genreward_jax.encoders.weights`.
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

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_IMAGE_SIZE = 224


@dataclasses.dataclass(frozen=True)
class DINOv3Config:
    """The inference-relevant fields of a transformers `DINOv3ViTConfig`.

    Defaults are DINOv3 ViT-S/16+ (facebook/dinov3-vits16plus-pretrain-lvd1689m).
    """

    patch_size: int = 16
    hidden_size: int = 384
    intermediate_size: int = 1536
    num_hidden_layers: int = 12
    num_attention_heads: int = 6
    hidden_act: str = "silu"
    layer_norm_eps: float = 1e-5
    rope_theta: float = 100.0
    num_channels: int = 3
    query_bias: bool = True
    key_bias: bool = False
    value_bias: bool = True
    proj_bias: bool = True
    mlp_bias: bool = True
    use_gated_mlp: bool = True
    num_register_tokens: int = 4

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} not divisible by heads {self.num_attention_heads}"
            )
        if (self.hidden_size // self.num_attention_heads) % 4:
            raise ValueError("2-D RoPE needs head_dim divisible by 4")
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(
                f"unsupported hidden_act {self.hidden_act!r}; known: {sorted(_ACTIVATIONS)}"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_transformers(cls, config: dict[str, Any]) -> DINOv3Config:
        """Build from a transformers `config.json` dict (training-only keys are ignored)."""
        model_type = config.get("model_type")
        if model_type != "dinov3_vit":
            raise ValueError(f"expected a dinov3_vit config, got model_type={model_type!r}")
        patch = config.get("patch_size", 16)
        if isinstance(patch, list | tuple):
            if len(set(patch)) != 1:
                raise ValueError(f"non-square patches are not supported, got {patch}")
            patch = patch[0]
        base = cls(
            patch_size=16,
            hidden_size=384,
            intermediate_size=1536,
            num_hidden_layers=12,
            num_attention_heads=6,
            hidden_act="gelu",
            use_gated_mlp=False,
            num_register_tokens=0,
        )  # transformers' DINOv3ViTConfig defaults, for keys the file leaves out
        fields = {
            f.name: config.get(f.name, getattr(base, f.name)) for f in dataclasses.fields(cls)
        }
        fields["patch_size"] = int(patch)
        return cls(**fields)


_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "relu": jax.nn.relu,
}


def rope_tables(
    num_patches_h: int, num_patches_w: int, config: DINOv3Config
) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin [h*w, head_dim] in float32, computed as transformers does (patch centres in [-1, 1],
    y frequencies then x frequencies, tiled twice)."""
    head_dim = config.head_dim
    inv_freq = 1.0 / np.float32(config.rope_theta) ** np.arange(
        0, 1, 4 / head_dim, dtype=np.float32
    )
    coords_h = np.arange(0.5, num_patches_h, dtype=np.float32) / np.float32(num_patches_h)
    coords_w = np.arange(0.5, num_patches_w, dtype=np.float32) / np.float32(num_patches_w)
    coords = np.stack(np.meshgrid(coords_h, coords_w, indexing="ij"), axis=-1).reshape(-1, 2)
    coords = np.float32(2.0) * coords - np.float32(1.0)
    angles = np.float32(2 * np.pi) * coords[:, :, None] * inv_freq[None, None, :].astype(np.float32)
    angles = np.tile(angles.reshape(angles.shape[0], -1), (1, 2))
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def _rotate_half(x: jax.Array) -> jax.Array:
    half = x.shape[-1] // 2
    return jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)


class Embeddings(nn.Module):
    config: DINOv3Config
    dtype: Any = f32

    def setup(self) -> None:
        cfg = self.config
        hidden = cfg.hidden_size
        self.cls_token = self.param("cls_token", nn.initializers.normal(0.02), (1, 1, hidden))
        # Only used for masked pre-training; kept so checkpoints load without leftovers.
        self.mask_token = self.param("mask_token", nn.initializers.zeros, (1, 1, hidden))
        self.register_tokens = self.param(
            "register_tokens", nn.initializers.normal(0.02), (1, cfg.num_register_tokens, hidden)
        )
        self.patch_embeddings = nn.Conv(
            hidden,
            (cfg.patch_size, cfg.patch_size),
            strides=(cfg.patch_size, cfg.patch_size),
            padding="VALID",
            dtype=self.dtype,
        )

    def __call__(self, pixels: jax.Array) -> jax.Array:
        # pixels [B, H, W, C] -> tokens [B, 1 + R + h*w, D]
        patches = self.patch_embeddings(pixels.astype(self.dtype))
        batch = patches.shape[0]
        patches = patches.reshape(batch, -1, patches.shape[-1])
        prefix = jnp.concatenate([self.cls_token, self.register_tokens], axis=1).astype(self.dtype)
        prefix = jnp.broadcast_to(prefix, (batch, *prefix.shape[1:]))
        return jnp.concatenate([prefix, patches], axis=1)


class Attention(nn.Module):
    config: DINOv3Config
    dtype: Any = f32

    @nn.compact
    def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
        # x [B, N, D]; cos, sin [P, head_dim] for the last P (patch) tokens
        cfg = self.config
        batch, tokens, hidden = x.shape

        def proj(name: str, bias: bool) -> jax.Array:
            y = nn.Dense(hidden, use_bias=bias, dtype=self.dtype, name=name)(x)
            return y.reshape(batch, tokens, cfg.num_attention_heads, cfg.head_dim)

        q = proj("q_proj", cfg.query_bias)
        k = proj("k_proj", cfg.key_bias)
        v = proj("v_proj", cfg.value_bias)
        prefix = tokens - cos.shape[0]
        cos = cos[None, :, None, :].astype(self.dtype)
        sin = sin[None, :, None, :].astype(self.dtype)

        def rope(t: jax.Array) -> jax.Array:
            patches = t[:, prefix:]
            return jnp.concatenate(
                [t[:, :prefix], patches * cos + _rotate_half(patches) * sin], axis=1
            )

        q, k = rope(q), rope(k)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(f32) * cfg.head_dim**-0.5
        weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(batch, tokens, hidden)
        return nn.Dense(hidden, use_bias=cfg.proj_bias, dtype=self.dtype, name="o_proj")(out)


class MLP(nn.Module):
    config: DINOv3Config
    dtype: Any = f32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.config
        act = _ACTIVATIONS[cfg.hidden_act]

        def dense(features: int, name: str) -> nn.Dense:
            return nn.Dense(features, use_bias=cfg.mlp_bias, dtype=self.dtype, name=name)

        up = dense(cfg.intermediate_size, "up_proj")(x)
        if cfg.use_gated_mlp:
            hidden = act(dense(cfg.intermediate_size, "gate_proj")(x)) * up
        else:
            hidden = act(up)
        return dense(cfg.hidden_size, "down_proj")(hidden)


class LayerScale(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        lambda1 = self.param("lambda1", nn.initializers.ones, (x.shape[-1],))
        return x * lambda1.astype(x.dtype)


def _layer_norm(config: DINOv3Config, dtype: Any, name: str | None = None) -> nn.LayerNorm:
    # Flax's default eps is 1e-6 and its default variance is the fast one-pass formula.
    return nn.LayerNorm(
        epsilon=config.layer_norm_eps, dtype=dtype, use_fast_variance=False, name=name
    )


class Layer(nn.Module):
    config: DINOv3Config
    dtype: Any = f32

    @nn.compact
    def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
        cfg = self.config
        h = _layer_norm(cfg, self.dtype, "norm1")(x)
        h = Attention(cfg, self.dtype, name="attention")(h, cos, sin)
        x = x + LayerScale(name="layer_scale1")(h)
        h = _layer_norm(cfg, self.dtype, "norm2")(x)
        h = MLP(cfg, self.dtype, name="mlp")(h)
        return x + LayerScale(name="layer_scale2")(h)


class Encoder(nn.Module):
    config: DINOv3Config
    dtype: Any = f32

    def setup(self) -> None:
        self.layer = [Layer(self.config, self.dtype) for _ in range(self.config.num_hidden_layers)]

    def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
        for layer in self.layer:
            x = layer(x, cos, sin)
        return x


class DINOv3ViT(nn.Module):
    """`DINOv3ViTModel` forward in eval mode.

    `dtype` is the compute dtype; LayerNorm statistics and the softmax are float32. Outputs are
    float32.
    """

    config: DINOv3Config
    dtype: Any = f32

    def setup(self) -> None:
        self.embeddings = Embeddings(self.config, self.dtype)
        self.model = Encoder(self.config, self.dtype)
        self.norm = _layer_norm(self.config, self.dtype)

    def __call__(self, pixels: jax.Array) -> dict[str, jax.Array]:
        """pixels [B, H, W, C], already preprocessed (see `preprocess_images`) ->
        {"pooled": [B, D] (CLS after the final norm, transformers' `pooler_output`),
         "patch_tokens": [B, h*w, D] (row-major patch grid, after the final norm)}."""
        cfg = self.config
        if pixels.ndim != 4 or pixels.shape[-1] != cfg.num_channels:
            raise ValueError(
                f"expected pixels [B, H, W, {cfg.num_channels}] (channels-last), got {pixels.shape}"
            )
        grid_h, grid_w = pixels.shape[1] // cfg.patch_size, pixels.shape[2] // cfg.patch_size
        cos, sin = rope_tables(grid_h, grid_w, cfg)
        tokens = self.embeddings(pixels)
        hidden = self.norm(self.model(tokens, jnp.asarray(cos), jnp.asarray(sin)))
        hidden = hidden.astype(f32)
        return {
            "pooled": hidden[:, 0],
            "patch_tokens": hidden[:, 1 + cfg.num_register_tokens :],
        }


def preprocess_images(
    images: jax.Array,
    size: int | tuple[int, int] = DEFAULT_IMAGE_SIZE,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> jax.Array:
    """uint8 (or 0..255 float) images [..., H, W, 3] -> model input [..., S_h, S_w, 3] float32.

    Same order as `DINOv3ViTImageProcessor`: scale by 1/255, resize (bilinear, antialiased, exact
    target size, no crop), then ImageNet mean/std.
    """
    height, width = (size, size) if isinstance(size, int) else size
    x = jnp.asarray(images, f32) * np.float32(1 / 255)
    if x.shape[-3:-1] != (height, width):
        shape = (*x.shape[:-3], height, width, x.shape[-1])
        x = jax.image.resize(x, shape, method="linear", antialias=True)
    return (x - jnp.asarray(mean, f32)) / jnp.asarray(std, f32)


def pooled_feature_fn(dino: Any) -> Callable[[jax.Array], jax.Array]:
    """Jitted uint8 images [N, H, W, 3] -> pooled features [N, D] of a loaded DINOv3
    (``weights.load_dinov3``), preprocessing included."""
    return jax.jit(lambda images: dino.apply(dino.params, preprocess_images(images))["pooled"])


def init_shapes(config: DINOv3Config) -> Any:
    """Abstract parameter tree ({name: ShapeDtypeStruct}) of `DINOv3ViT(config)`."""
    dummy = jax.ShapeDtypeStruct(
        (1, config.patch_size, config.patch_size, config.num_channels), f32
    )
    module = DINOv3ViT(config)
    return jax.eval_shape(lambda x: module.init(jax.random.PRNGKey(0), x), dummy)["params"]


__all__ = ("DINOv3Config", "DINOv3ViT", "pooled_feature_fn", "preprocess_images", "rope_tables")
