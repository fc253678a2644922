"""Layers and networks of DreamerV3 as Flax NNX modules.

Parameters are float32; every layer casts its input and weights to the compute dtype
(``dtype``) and norms run in float32. Weights use a truncated normal (+-2 std) scaled by
1.1368 / sqrt(fan_in) (so the truncated distribution has variance 1 / fan_in), biases are zero.
Multi-dimensional parameters count their fan-in like the official code: everything but the last
axis (a block-linear kernel [G, I/G, O/G] therefore has fan-in I, not I/G).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genreward_jax.dreamer.distributions import symlog

f32 = jnp.float32


def trunc_normal_fan_in(
    key: jax.Array, shape: Sequence[int], fan_in: int, scale: float = 1.0
) -> jax.Array:
    """Truncated-normal init with variance scale^2 / fan_in (the 1.1368 undoes truncation)."""
    x = jax.random.truncated_normal(key, -2.0, 2.0, tuple(shape), f32)
    return x * (1.1368 * np.sqrt(1.0 / fan_in) * scale)


class Linear(nnx.Module):
    """x @ W + b over the last axis. outscale multiplies the init (0 gives a zero layer)."""

    def __init__(self, din: int, dout: int, *, rngs: nnx.Rngs, dtype=f32, outscale: float = 1.0):
        self.kernel = nnx.Param(trunc_normal_fan_in(rngs.params(), (din, dout), din, outscale))
        self.bias = nnx.Param(jnp.zeros((dout,), f32))
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.astype(self.dtype)
        return x @ self.kernel[...].astype(self.dtype) + self.bias[...].astype(self.dtype)


class BlockLinear(nnx.Module):
    """Block-diagonal linear: input [..., G*I] and output [..., G*O] split into G groups that
    do not mix. Used by the block GRU and the image decoder."""

    def __init__(self, din: int, dout: int, blocks: int, *, rngs: nnx.Rngs, dtype=f32):
        if din % blocks or dout % blocks:
            raise ValueError(f"din {din} and dout {dout} must be divisible by blocks {blocks}")
        shape = (blocks, din // blocks, dout // blocks)
        self.kernel = nnx.Param(trunc_normal_fan_in(rngs.params(), shape, din))
        self.bias = nnx.Param(jnp.zeros((dout,), f32))
        self.blocks = blocks
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        g = self.blocks
        x = x.astype(self.dtype).reshape((*x.shape[:-1], g, x.shape[-1] // g))
        x = jnp.einsum("...gi,gio->...go", x, self.kernel[...].astype(self.dtype))
        return x.reshape((*x.shape[:-2], -1)) + self.bias[...].astype(self.dtype)


def _conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


@jax.custom_vjp
def conv_same(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Stride-1 'SAME' convolution x [N, H, W, I] * kernel [k, k, I, O] (k odd) ->
    [N, H, W, O], with the kernel's gradient computed as matmuls (``_conv_kernel_grad``).

    XLA's CPU backend computes a convolution's kernel gradient as a convolution whose window
    is the whole feature map, at a few GFLOP/s: before this, the image agent's encoder and
    decoder spent about two thirds of the 12m train step there. The forward pass and the
    input gradient stay XLA's convolutions, and so does the kernel gradient of a layer whose
    k * I is under 32 (the 3-channel image input), where XLA's is the faster one."""
    return _conv(x, kernel)


def _conv_same_fwd(x, kernel):
    return _conv(x, kernel), (x, kernel)


def _conv_same_bwd(residuals, grad):
    x, kernel = residuals
    k, _, i, _ = kernel.shape
    if k * i < 32:
        grad_x, grad_kernel = jax.vjp(_conv, x, kernel)[1](grad)
        return grad_x, grad_kernel
    (grad_x,) = jax.vjp(lambda x: _conv(x, kernel), x)[1](grad)
    return grad_x, _conv_kernel_grad(x, grad, k).astype(kernel.dtype)


conv_same.defvjp(_conv_same_fwd, _conv_same_bwd)


def _conv_kernel_grad(x: jax.Array, grad: jax.Array, k: int) -> jax.Array:
    """Kernel gradient [k, k, I, O] of a stride-1 'SAME' convolution from its input
    x [N, H, W, I] and output gradient grad [N, H, W, O]: for each kernel tap (a, b), the
    sum over n, h, w of x_pad[n, h + a, w + b, i] * grad[n, h, w, o].

    The padded input is laid out row-major [H + 2r, N, W, (b, I)] with its k column shifts
    side by side (an im2col along the width only: k times the input), and the gradient
    [H + 2r, N, W, O] shifted down by a rows (zero rows elsewhere) pairs each of its rows
    with the input row a below: one [O, (H + 2r) N W] x [(H + 2r) N W, k I] matmul per row
    offset a. Shifting the gradient (O wide, no wider than k I in any layer of the presets)
    copies less than slicing the columns would."""
    n, h, w, i = x.shape
    r = k // 2
    padded = jnp.pad(x, ((0, 0), (r, r), (r, r), (0, 0))).transpose((1, 0, 2, 3))
    columns = jnp.stack([padded[:, :, b : b + w] for b in range(k)], 3)  # [H+2r, N, W, k, I]
    columns = columns.reshape(((h + 2 * r) * n * w, k * i))
    rows = jnp.pad(grad.transpose((1, 0, 2, 3)), ((2 * r, 2 * r), (0, 0), (0, 0), (0, 0)))
    per_row_offset = [
        rows[2 * r - a : 2 * r - a + h + 2 * r].reshape((columns.shape[0], -1)).T @ columns
        for a in range(k)
    ]
    out = jnp.stack(per_row_offset).reshape((k, -1, k, i))  # [a, O, b, I]
    return out.transpose((0, 2, 3, 1))


class Conv2D(nnx.Module):
    """Stride-1 'SAME' convolution, NHWC."""

    def __init__(self, din: int, dout: int, kernel: int, *, rngs: nnx.Rngs, dtype=f32):
        shape = (kernel, kernel, din, dout)
        self.kernel = nnx.Param(trunc_normal_fan_in(rngs.params(), shape, kernel * kernel * din))
        self.bias = nnx.Param(jnp.zeros((dout,), f32))
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x = conv_same(x.astype(self.dtype), self.kernel[...].astype(self.dtype))
        return x + self.bias[...].astype(self.dtype)

    def upsampled(self, x: jax.Array) -> jax.Array:
        """``self(x.repeat(2, 1).repeat(2, 2))``, the convolution of the nearest x2 upsampled
        map, computed at the input's resolution: x [N, H, W, C] -> [N, 2H, 2W, O].

        Each of the four output phases (row and column parity) of a 5x5 kernel on the
        upsampled map sees only a 3x3 neighbourhood of the input, through the kernel's taps
        summed where they land on the same input pixel (``upsample_taps``). One 3x3
        convolution to 4*O channels holds all four phases; a depth-to-space reshape lays them
        out. The same linear map with 36 % of the multiplies, and no upsampled activations to
        keep for the backward pass (the decoder's stages are the image agent's costliest
        kernels, the 3-channel output one above all)."""
        k = self.kernel.shape[0]
        taps = jnp.asarray(upsample_taps(k))  # [2, K', k]
        n, h, w, _ = x.shape
        out = self.kernel.shape[-1]
        # The folded kernel is centred (input offsets -K'//2..K'//2): a 'SAME' convolution.
        kernel = jnp.einsum("pat,qbu,tuio->abipqo", taps, taps, self.kernel[...])
        kernel = kernel.reshape((*kernel.shape[:3], 4 * out))
        y = conv_same(x.astype(self.dtype), kernel.astype(self.dtype))
        y = y.reshape((n, h, w, 2, 2, out)).transpose((0, 1, 3, 2, 4, 5))
        return y.reshape((n, 2 * h, 2 * w, out)) + self.bias[...].astype(self.dtype)


# One bit per position of a 2x2 window, laid out like the window axes [.., 2, .., 2, ..].
_WINDOW_BITS = np.array([[1, 2], [4, 8]], np.uint8).reshape((1, 1, 2, 1, 2, 1))


@jax.custom_vjp
def max_pool2(x: jax.Array) -> jax.Array:
    """2x2 max-pool with stride 2: x [N, H, W, C] -> [N, H/2, W/2, C].

    Its gradient is JAX's for ``max`` (each output's gradient split evenly among the inputs
    equal to the maximum), written out so the backward pass keeps one byte per output that
    says which of its four inputs were the maximum; differentiated as a reduction, XLA kept
    several input-sized arrays for it (the image encoder's first stage holds the largest)."""
    n, h, w, c = x.shape
    return x.reshape((n, h // 2, 2, w // 2, 2, c)).max((2, 4))


def _max_pool2_fwd(x):
    n, h, w, c = x.shape
    windows = x.reshape((n, h // 2, 2, w // 2, 2, c))
    out = windows.max((2, 4))
    is_max = windows == out[:, :, None, :, None]  # [N, H/2, 2, W/2, 2, C]
    which = (is_max.astype(jnp.uint8) * _WINDOW_BITS).sum((2, 4), dtype=jnp.uint8)
    return out, which


def _max_pool2_bwd(which, grad):
    n, h2, w2, c = grad.shape
    is_max = (which[:, :, None, :, None] & _WINDOW_BITS) != 0  # [N, H/2, 2, W/2, 2, C]
    share = grad / is_max.sum((2, 4), dtype=grad.dtype)
    grad_x = jnp.where(is_max, share[:, :, None, :, None], jnp.zeros((), grad.dtype))
    return (grad_x.reshape((n, 2 * h2, 2 * w2, c)),)


max_pool2.defvjp(_max_pool2_fwd, _max_pool2_bwd)


def upsample_taps(kernel: int) -> np.ndarray:
    """0/1 matrix [2, K', kernel] folding a kernel's taps along one axis onto the low-resolution
    input for each output phase p of a nearest x2 upsample: output pixel 2i + p reads the
    upsampled input at 2i + p + t - r (t the tap, r = kernel // 2), which is input pixel
    i + floor((p + t - r) / 2); K' spans those offsets (3 for kernel 5)."""
    r = kernel // 2
    lo, hi = (-r) // 2, (1 + r) // 2
    taps = np.zeros((2, hi - lo + 1, kernel), np.float32)
    for p in range(2):
        for t in range(kernel):
            taps[p, (p + t - r) // 2 - lo, t] = 1.0
    return taps


def _rms_normalise(x: jax.Array, axes: tuple[int, ...], eps: float) -> tuple[jax.Array, jax.Array]:
    """x in float32 over ``axes``: (x / rms(x), 1 / rms(x)) with the reduced axes kept."""
    x = x.astype(f32)
    inv = jax.lax.rsqrt(jnp.square(x).mean(axes, keepdims=True) + eps)
    return x * inv, inv


def _sum_to_shape(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Sum x over the leading and size-1 axes that broadcasting added to ``shape``."""
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, size in enumerate(shape) if size == 1 and x.shape[lead + i] != 1
    )
    return x.sum(axes).reshape(shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def rms_silu(x: jax.Array, scale: jax.Array, axes: tuple[int, ...], eps: float) -> jax.Array:
    """silu(rms_norm(x) * scale): RMS normalisation over ``axes`` in float32 with a learned
    scale (broadcast against x), then SiLU, returned in x's dtype.

    The unit of every hidden layer. Its gradient is written out: differentiated as composed
    ops, XLA keeps the normalised activations, the sigmoid and their products as separate
    full-size arrays for the backward pass (the image agent's largest temporaries are these,
    on the conv maps); here the forward pass keeps only x and the inverse RMS [..., 1] and the
    backward pass recomputes the rest inside one fusion."""
    normed, _ = _rms_normalise(x, axes, eps)
    return jax.nn.silu(normed * scale).astype(x.dtype)


def _rms_silu_fwd(x, scale, axes, eps):
    normed, inv = _rms_normalise(x, axes, eps)
    return jax.nn.silu(normed * scale).astype(x.dtype), (x, inv, scale)


def _rms_silu_bwd(axes, eps, residuals, grad):
    x, inv, scale = residuals
    normed = x.astype(f32) * inv
    z = normed * scale
    sig = jax.nn.sigmoid(z)
    grad_z = grad.astype(f32) * sig * (1.0 + z * (1.0 - sig))  # d silu(z) / dz
    grad_scale = _sum_to_shape(grad_z * normed, scale.shape)
    grad_normed = grad_z * scale
    # d(x * inv)/dx: inv * (g - normed * mean(g * normed)) over the normalised axes.
    grad_x = inv * (grad_normed - normed * (grad_normed * normed).mean(axes, keepdims=True))
    return grad_x.astype(x.dtype), grad_scale.astype(scale.dtype)


rms_silu.defvjp(_rms_silu_fwd, _rms_silu_bwd)


@jax.custom_vjp
def linear_of_known_output(
    xs: Sequence[jax.Array], kernel: jax.Array, bias: jax.Array, out: jax.Array
) -> jax.Array:
    """``out``, taken to be ``concat(xs, -1) @ kernel + bias`` with constant inputs xs
    [..., I_i] (no gradient; their rows in the order of out's): the forward pass returns it
    as it is, the backward pass gives the kernel and bias their gradients of that product
    (x^T g per part, the sum of g) and nothing to xs or out. Taking the input in parts
    spares a concatenated copy of it."""
    return out


def _known_output_fwd(xs, kernel, bias, out):
    return out, (xs, kernel, bias)


def _known_output_bwd(residuals, grad):
    xs, kernel, bias = residuals
    grad = grad.reshape((-1, grad.shape[-1])).astype(f32)
    parts = [x.reshape((-1, x.shape[-1])).astype(f32).T @ grad for x in xs]
    grad_kernel = jnp.concatenate(parts, 0).astype(kernel.dtype)
    return None, grad_kernel, grad.sum(0).astype(bias.dtype), None


linear_of_known_output.defvjp(_known_output_fwd, _known_output_bwd)


class RMSNorm(nnx.Module):
    """RMS normalisation over the last axis with a learned scale (no shift), in float32."""

    def __init__(self, features: int, eps: float = 1e-4):
        self.scale = nnx.Param(jnp.ones((features,), f32))
        self.eps = eps

    def __call__(self, x: jax.Array) -> jax.Array:
        normed, _ = _rms_normalise(x, (-1,), self.eps)
        return (normed * self.scale[...]).astype(x.dtype)

    def silu(self, x: jax.Array) -> jax.Array:
        """``silu(self(x))`` as one unit with a written-out gradient (``rms_silu``)."""
        return rms_silu(x, self.scale[...], (-1,), self.eps)


class NormAct(nnx.Module):
    """Linear -> RMSNorm -> SiLU, the unit every hidden layer is made of."""

    def __init__(self, din: int, dout: int, *, rngs: nnx.Rngs, dtype=f32, eps: float = 1e-4):
        self.linear = Linear(din, dout, rngs=rngs, dtype=dtype)
        self.norm = RMSNorm(dout, eps)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.norm.silu(self.linear(x))


class MLP(nnx.Module):
    """``layers`` NormAct layers of width ``units`` (layer0, layer1, ... keep string keys)."""

    def __init__(
        self, din: int, layers: int, units: int, *, rngs: nnx.Rngs, dtype=f32, eps: float = 1e-4
    ):
        self.layers = layers
        for i in range(layers):
            setattr(
                self,
                f"layer{i}",
                NormAct(din if i == 0 else units, units, rngs=rngs, dtype=dtype, eps=eps),
            )

    def __call__(self, x: jax.Array) -> jax.Array:
        for i in range(self.layers):
            x = getattr(self, f"layer{i}")(x)
        return x

    def first(self, x: jax.Array) -> jax.Array:
        """The first layer's linear part [..., units] (pre-activation), for callers that
        compute it apart from the rest (``joint_first_layer``, rows split by gradient)."""
        return self.layer0.linear(x)

    def first_known(self, xs: Sequence[jax.Array], pre: jax.Array) -> jax.Array:
        """``first(concat(xs, -1))`` for an input without gradient whose value ``pre`` was
        already computed (with these parameters, e.g. inside the imagination scan): no matmul
        in the forward pass, the kernel and bias gradients in the backward pass."""
        linear = self.layer0.linear
        return linear_of_known_output(tuple(xs), linear.kernel[...], linear.bias[...], pre)

    def rest(self, pre: jax.Array) -> jax.Array:
        """The MLP from the first layer's pre-activation ``first(x)``: ``rest(first(x))``
        equals ``self(x)``."""
        x = self.layer0.norm.silu(pre)
        for i in range(1, self.layers):
            x = getattr(self, f"layer{i}")(x)
        return x


def joint_first_layer(x: jax.Array, mlps: Sequence[MLP]) -> list[jax.Array]:
    """The first-layer pre-activations of several MLPs that read the same input x [..., din],
    as one matmul against their kernels side by side: one [rows, din] x [din, sum(units)]
    product instead of one per MLP (the heads on the imagined rows, where each of them is one
    of the train step's largest matmuls). Returns ``[m.first(x) for m in mlps]``."""
    linears = [m.layer0.linear for m in mlps]
    dtype = linears[0].dtype
    kernel = jnp.concatenate([lin.kernel[...] for lin in linears], -1).astype(dtype)
    bias = jnp.concatenate([lin.bias[...] for lin in linears], -1).astype(dtype)
    out = x.astype(dtype) @ kernel + bias
    splits = np.cumsum([lin.kernel.shape[-1] for lin in linears])[:-1]
    return jnp.split(out, splits, -1)


def _concat_vectors(obs: dict[str, jax.Array], keys: Sequence[str]) -> jax.Array:
    return jnp.concatenate([obs[k].astype(f32).reshape((*obs[k].shape[:-1], -1)) for k in keys], -1)


class Encoder(nnx.Module):
    """Observations -> embedding [N, E]. Vectors: symlog then an MLP; images [N, 64, 64, C]
    uint8: x/255 - 0.5, then per stage 5x5 conv -> 2x2 max-pool -> norm -> SiLU down to 4x4."""

    def __init__(
        self,
        vector_dims: dict[str, int],
        image_shapes: dict[str, tuple[int, ...]],
        *,
        units: int,
        layers: int,
        depth: int,
        mults: Sequence[int],
        kernel: int,
        rngs: nnx.Rngs,
        dtype=f32,
        eps: float = 1e-4,
    ):
        self.vector_keys = tuple(sorted(vector_dims))
        self.image_keys = tuple(sorted(image_shapes))
        self.dtype = dtype
        self.out_size = 0
        if self.vector_keys:
            din = sum(vector_dims.values())
            self.mlp = MLP(din, layers, units, rngs=rngs, dtype=dtype, eps=eps)
            self.out_size += units
        if self.image_keys:
            shapes = [image_shapes[k] for k in self.image_keys]
            height, width = shapes[0][:2]
            channels = sum(s[-1] for s in shapes)
            self.stages = len(mults)
            for i, mult in enumerate(mults):
                din = channels if i == 0 else depth * mults[i - 1]
                setattr(self, f"conv{i}", Conv2D(din, depth * mult, kernel, rngs=rngs, dtype=dtype))
                setattr(self, f"norm{i}", RMSNorm(depth * mult, eps))
            factor = 2 ** len(mults)
            if height % factor or width % factor:
                raise ValueError(f"image size {height}x{width} must be divisible by {factor}")
            self.out_size += (height // factor) * (width // factor) * depth * mults[-1]

    def __call__(self, obs: dict[str, jax.Array]) -> jax.Array:
        """obs: dict of [N, ...] arrays -> embedding [N, E] in the compute dtype."""
        outs = []
        if self.vector_keys:
            outs.append(self.mlp(symlog(_concat_vectors(obs, self.vector_keys))))
        if self.image_keys:
            x = jnp.concatenate([obs[k] for k in self.image_keys], -1)
            x = x.astype(self.dtype) / 255 - 0.5
            for i in range(self.stages):
                x = max_pool2(getattr(self, f"conv{i}")(x))
                x = getattr(self, f"norm{i}").silu(x)
            outs.append(x.reshape((x.shape[0], -1)))
        return jnp.concatenate([o.astype(self.dtype) for o in outs], -1)


class Decoder(nnx.Module):
    """Latent (deter, flat stoch) -> reconstructions. Vectors: MLP then a linear output per key
    (symlog MSE target). Images: block-linear from deter plus an MLP from stoch to a 4x4 map,
    then (nearest x2 upsample -> 5x5 conv -> norm -> SiLU) stages and a sigmoid output."""

    def __init__(
        self,
        vector_dims: dict[str, int],
        image_shapes: dict[str, tuple[int, ...]],
        *,
        deter: int,
        stoch_flat: int,
        units: int,
        layers: int,
        depth: int,
        mults: Sequence[int],
        kernel: int,
        blocks: int,
        rngs: nnx.Rngs,
        dtype=f32,
        eps: float = 1e-4,
    ):
        self.vector_dims = {k: vector_dims[k] for k in sorted(vector_dims)}
        self.image_keys = tuple(sorted(image_shapes))
        self.dtype = dtype
        if self.vector_dims:
            self.mlp = MLP(deter + stoch_flat, layers, units, rngs=rngs, dtype=dtype, eps=eps)
            self.vec_out = Linear(units, sum(self.vector_dims.values()), rngs=rngs, dtype=dtype)
        if self.image_keys:
            shapes = [image_shapes[k] for k in self.image_keys]
            self.image_channels = tuple(s[-1] for s in shapes)
            factor = 2 ** len(mults)
            self.minres = (shapes[0][0] // factor, shapes[0][1] // factor)
            depths = [depth * m for m in mults]
            self.blocks = blocks
            self.map_shape = (*self.minres, depths[-1])
            map_size = math.prod(self.map_shape)
            self.space_deter = BlockLinear(deter, map_size, blocks, rngs=rngs, dtype=dtype)
            self.space_stoch = NormAct(stoch_flat, 2 * units, rngs=rngs, dtype=dtype, eps=eps)
            self.space_stoch_out = Linear(2 * units, map_size, rngs=rngs, dtype=dtype)
            self.space_norm = RMSNorm(depths[-1], eps)
            self.stages = len(mults) - 1
            for j, i in enumerate(reversed(range(self.stages))):
                setattr(
                    self,
                    f"conv{j}",
                    Conv2D(depths[i + 1], depths[i], kernel, rngs=rngs, dtype=dtype),
                )
                setattr(self, f"norm{j}", RMSNorm(depths[i], eps))
            self.img_out = Conv2D(
                depths[0], sum(self.image_channels), kernel, rngs=rngs, dtype=dtype
            )

    def __call__(self, deter: jax.Array, stoch: jax.Array) -> dict[str, jax.Array]:
        """deter [N, D], stoch [N, S, K] -> {key: float32 prediction [N, ...]}. Vector
        predictions are in symlog space; images in [0, 1]."""
        stoch = stoch.reshape((stoch.shape[0], -1))
        recons = {}
        if self.vector_dims:
            x = self.vec_out(self.mlp(jnp.concatenate([deter, stoch], -1)))
            splits = np.cumsum(list(self.vector_dims.values()))[:-1]
            for k, v in zip(self.vector_dims, jnp.split(x, splits, -1), strict=True):
                recons[k] = v.astype(f32)
        if self.image_keys:
            n = deter.shape[0]
            h, w = self.minres
            g = self.blocks
            # Block-linear output (g h w c) laid out as an h x w map with (g c) channels.
            x0 = self.space_deter(deter).reshape((n, g, h, w, -1))
            x0 = x0.transpose((0, 2, 3, 1, 4)).reshape((n, h, w, -1))
            x1 = self.space_stoch_out(self.space_stoch(stoch)).reshape((n, *self.map_shape))
            x = self.space_norm.silu(x0 + x1)
            for j in range(self.stages):  # nearest x2 upsample -> conv, at the input's size
                x = getattr(self, f"conv{j}").upsampled(x)
                x = getattr(self, f"norm{j}").silu(x)
            x = jax.nn.sigmoid(self.img_out.upsampled(x).astype(f32))
            splits = np.cumsum(self.image_channels)[:-1]
            for k, v in zip(self.image_keys, jnp.split(x, splits, -1), strict=True):
                recons[k] = v
        return recons


class Head(nnx.Module):
    """MLP followed by a linear output of ``dout`` units (outscale 0 = zero-initialised)."""

    def __init__(
        self,
        din: int,
        layers: int,
        units: int,
        dout: int,
        *,
        rngs: nnx.Rngs,
        dtype=f32,
        outscale: float = 1.0,
        eps: float = 1e-4,
    ):
        self.mlp = MLP(din, layers, units, rngs=rngs, dtype=dtype, eps=eps)
        self.out = Linear(units if layers else din, dout, rngs=rngs, dtype=dtype, outscale=outscale)

    def __call__(self, x: jax.Array) -> jax.Array:
        """[..., din] -> float32 [..., dout]."""
        return self.out(self.mlp(x)).astype(f32)

    def rest(self, pre: jax.Array) -> jax.Array:
        """The head from its MLP's first pre-activation (``MLP.first``) -> float32 [..., dout]."""
        return self.out(self.mlp.rest(pre)).astype(f32)


class Actor(nnx.Module):
    """Bounded-normal policy head: MLP then separate mean and std outputs (outscale 0.01)."""

    def __init__(
        self,
        din: int,
        layers: int,
        units: int,
        act_dim: int,
        *,
        rngs: nnx.Rngs,
        dtype=f32,
        outscale: float = 0.01,
        eps: float = 1e-4,
    ):
        self.mlp = MLP(din, layers, units, rngs=rngs, dtype=dtype, eps=eps)
        self.mean = Linear(units, act_dim, rngs=rngs, dtype=dtype, outscale=outscale)
        self.std = Linear(units, act_dim, rngs=rngs, dtype=dtype, outscale=outscale)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """[..., din] -> raw (pre-squash) mean and std, float32 [..., A] each."""
        return self.rest(self.mlp.first(x))

    def rest(self, pre: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The policy from its MLP's first pre-activation (``MLP.first``)."""
        h = self.mlp.rest(pre)
        return self.mean(h).astype(f32), self.std(h).astype(f32)
