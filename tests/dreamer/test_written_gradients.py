"""The train step's pieces with hand-written gradients (or fewer ops) against the composed
operations they replace: values and gradients must match."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from genreward_jax.dreamer import networks as nw


def _rms_silu_composed(x, scale, axes, eps):
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.square(x32).mean(axes, keepdims=True) + eps)
    return jax.nn.silu(normed * scale).astype(x.dtype)


@pytest.mark.parametrize(
    "shape, scale_shape, axes",
    [((5, 3, 16), (16,), (-1,)), ((4, 6, 8), (4, 1, 8), (0, 2))],  # last axis; grouped
)
def test_rms_silu_value_and_gradients_equal_the_composed_ops(shape, scale_shape, axes):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=shape) * 3, jnp.float32)
    scale = jnp.asarray(rng.normal(size=scale_shape), jnp.float32)
    weights = jnp.asarray(rng.normal(size=shape), jnp.float32)

    def loss(fn):
        return lambda x, s: (fn(x, s, axes, 1e-4) * weights).sum()

    np.testing.assert_allclose(
        nw.rms_silu(x, scale, axes, 1e-4), _rms_silu_composed(x, scale, axes, 1e-4), rtol=1e-6
    )
    ours = jax.grad(loss(nw.rms_silu), (0, 1))(x, scale)
    ref = jax.grad(loss(_rms_silu_composed), (0, 1))(x, scale)
    for a, b in zip(ours, ref, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_rms_silu_bfloat16_keeps_the_dtype_and_stays_close():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(6, 32)), jnp.bfloat16)
    scale = jnp.asarray(rng.normal(size=(32,)), jnp.float32)
    out = nw.rms_silu(x, scale, (-1,), 1e-4)
    assert out.dtype == jnp.bfloat16
    ref = _rms_silu_composed(x.astype(jnp.float32), scale, (-1,), 1e-4)
    np.testing.assert_allclose(out.astype(jnp.float32), ref, atol=2e-2)
    grad = jax.grad(lambda x: nw.rms_silu(x, scale, (-1,), 1e-4).astype(jnp.float32).sum())(x)
    assert grad.dtype == jnp.bfloat16 and bool(jnp.isfinite(grad.astype(jnp.float32)).all())


def test_max_pool2_value_and_gradient_equal_jax_max_ties_included():
    rng = np.random.default_rng(0)
    # Integers in a small range: many ties inside the 2x2 windows.
    x = jnp.asarray(rng.integers(0, 3, size=(2, 8, 6, 5)), jnp.float32)
    weights = jnp.asarray(rng.normal(size=(2, 4, 3, 5)), jnp.float32)

    def reference(x):
        n, h, w, c = x.shape
        return x.reshape((n, h // 2, 2, w // 2, 2, c)).max((2, 4))

    np.testing.assert_array_equal(nw.max_pool2(x), reference(x))
    ours = jax.grad(lambda x: (nw.max_pool2(x) * weights).sum())(x)
    ref = jax.grad(lambda x: (reference(x) * weights).sum())(x)
    np.testing.assert_allclose(ours, ref, rtol=1e-6)
    assert float(jnp.abs(ref - jnp.round(ref)).max()) > 0  # some window had a split tie


def test_linear_of_known_output_gives_the_linear_layers_parameter_gradients():
    rng = np.random.default_rng(0)
    deter = jnp.asarray(rng.normal(size=(4, 3, 6)), jnp.float32)
    stoch = jnp.asarray(rng.normal(size=(4, 3, 2)), jnp.float32)
    layer = nw.Linear(8, 5, rngs=nnx.Rngs(0))
    layer.bias[...] = jnp.asarray(rng.normal(size=(5,)), jnp.float32)
    weights = jnp.asarray(rng.normal(size=(4, 3, 5)), jnp.float32)
    x = jnp.concatenate([deter, stoch], -1)

    def direct(kernel, bias):
        return ((x @ kernel + bias) * weights).sum()

    def known(kernel, bias):
        out = jax.lax.stop_gradient(x @ kernel + bias)
        return (nw.linear_of_known_output((deter, stoch), kernel, bias, out) * weights).sum()

    params = (layer.kernel[...], layer.bias[...])
    np.testing.assert_allclose(known(*params), direct(*params), rtol=1e-6)
    for a, b in zip(
        jax.grad(known, (0, 1))(*params), jax.grad(direct, (0, 1))(*params), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_first_layer_paths_equal_the_mlp():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(7, 10)), jnp.float32)
    mlps = [nw.MLP(10, layers, 6 + layers, rngs=nnx.Rngs(layers)) for layers in (1, 2, 3)]
    joint = nw.joint_first_layer(x, mlps)
    for mlp, pre in zip(mlps, joint, strict=True):
        np.testing.assert_allclose(pre, mlp.first(x), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(mlp.rest(pre), mlp(x), rtol=1e-5, atol=1e-6)
    # Each MLP's parameters get only their own gradient through the joint matmul.
    params = [nnx.state(m, nnx.Param) for m in mlps]

    def loss(params, index):
        merged = [nnx.merge(nnx.graphdef(m), p) for m, p in zip(mlps, params, strict=True)]
        return merged[index].rest(nw.joint_first_layer(x, merged)[index]).sum()

    def alone(p):
        return nnx.merge(nnx.graphdef(mlps[1]), p)(x).sum()

    grads = jax.grad(loss)(params, 1)
    assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(grads[0]))
    for a, b in zip(
        jax.tree.leaves(grads[1]), jax.tree.leaves(jax.grad(alone)(params[1])), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k, channels", [(3, 12), (5, 8), (5, 3)])  # last: XLA's gradient
def test_conv_same_value_and_gradients_equal_the_xla_convolution(k, channels):
    rng = np.random.default_rng(k)
    x = jnp.asarray(rng.normal(size=(3, 6, 5, channels)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(k, k, channels, 7)), jnp.float32)
    weights = jnp.asarray(rng.normal(size=(3, 6, 5, 7)), jnp.float32)

    def reference(x, kernel):
        return jax.lax.conv_general_dilated(
            x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    np.testing.assert_allclose(nw.conv_same(x, kernel), reference(x, kernel), rtol=1e-5, atol=1e-5)
    ours = jax.grad(lambda x, w: (nw.conv_same(x, w) * weights).sum(), (0, 1))(x, kernel)
    ref = jax.grad(lambda x, w: (reference(x, w) * weights).sum(), (0, 1))(x, kernel)
    for a, b in zip(ours, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
