"""The train step's pieces with hand-written gradients (or fewer ops) against the composed
operations they replace: values and gradients must match."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from genreward_jax.dreamer import networks as nw
from genreward_jax.dreamer.hoisted_scan import hoisted_scan, plain_linear
from genreward_jax.dreamer.rssm import gru_gates


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


def _gru_gates_composed(x, state):
    reset = jax.nn.sigmoid(x[..., 0, :])
    cand = jnp.tanh(reset * x[..., 1, :])
    update = jax.nn.sigmoid(x[..., 2, :] - 1.0)
    return update * cand + (1 - update) * state


def test_gru_gates_value_and_gradients_equal_the_composed_ops():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(4, 5, 3, 8)) * 2, jnp.float32)
    state = jnp.asarray(rng.normal(size=(4, 5, 8)), jnp.float32)
    weights = jnp.asarray(rng.normal(size=(4, 5, 8)), jnp.float32)
    np.testing.assert_array_equal(gru_gates(x, state), _gru_gates_composed(x, state))
    ours = jax.grad(lambda x, s: (gru_gates(x, s) * weights).sum(), (0, 1))(x, state)
    ref = jax.grad(lambda x, s: (_gru_gates_composed(x, s) * weights).sum(), (0, 1))(x, state)
    for a, b in zip(ours, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def _toy_step(linear, params, carry, inputs):
    """A recurrent step with a plain and a grouped kernel, params and a per-step constant:
    h' = tanh(in(x) + rec(h) * mask + b), grouped g' = tanh(grp(g)) + h', out(h') beside."""
    x, mask = inputs
    h, g = carry
    h = jnp.tanh(linear("in", x) + linear("rec", h) * mask + params["b"])
    g = jnp.tanh(linear("grp", g)) + h.reshape(g.shape[1], 2, -1).transpose((1, 0, 2))
    return (h, g), {"h": h + 0.1 * linear("out", h), "sq": (g * params["s"]).sum(-1)}


def test_hoisted_scan_equals_a_plain_scan_in_value_and_every_gradient():
    rng = np.random.default_rng(4)
    t, n, i, d = 6, 3, 5, 8

    def arr(*shape):
        return jnp.asarray(rng.normal(size=shape) * 0.5, jnp.float32)

    kernels = {"in": arr(i, d), "rec": arr(d, d), "out": arr(d, d), "grp": arr(2, d // 2, d // 2)}
    params = {"b": arr(d), "s": arr(d // 2)}
    carry = (arr(n, d), arr(2, n, d // 2))
    xs = arr(t, n, i)
    masks = jnp.asarray(rng.random((t, n, 1)) > 0.3, jnp.float32)
    weights = arr(t, n, d), arr(t, 2, n)

    def loss(scan):
        def fn(kernels, params, carry, xs):
            (h, g), out = scan(kernels, params, carry, xs)
            return (
                (out["h"] * weights[0]).sum()
                + (out["sq"] * weights[1]).sum()
                + (h * h).sum() * g.sum()
            )

        return fn

    def plain(kernels, params, carry, xs):
        step = lambda c, inputs: _toy_step(plain_linear(kernels), params, c, inputs)  # noqa: E731
        return jax.lax.scan(step, carry, (xs, masks))

    def hoisted(kernels, params, carry, xs):
        return hoisted_scan(_toy_step, kernels, params, carry, xs, masks)

    args = (kernels, params, carry, xs)
    np.testing.assert_array_equal(loss(hoisted)(*args), loss(plain)(*args))
    ours = jax.grad(loss(hoisted), (0, 1, 2, 3))(*args)
    ref = jax.grad(loss(plain), (0, 1, 2, 3))(*args)
    flat_ours, flat_ref = jax.tree.leaves(ours), jax.tree.leaves(ref)
    assert len(flat_ours) == len(flat_ref) == 9
    for a, b in zip(flat_ours, flat_ref, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_hoisted_scan_refuses_a_kernel_applied_twice_in_a_step():
    def step(linear, params, carry, inputs):
        carry = linear("rec", linear("rec", carry))
        return carry, carry

    kernel = {"rec": jnp.eye(3)}
    with pytest.raises(ValueError, match="'rec' is applied twice"):
        hoisted_scan(step, kernel, {}, jnp.ones((2, 3)), jnp.zeros((4, 1)), jnp.zeros((4, 1)))


def test_observe_gradients_equal_with_and_without_the_hoisted_scan():
    """The RSSM's observe scan (hoisted unless remat_observe) against the rematerialised plain
    scan: same posterior, same gradients for every parameter and input."""
    from genreward_jax.dreamer.rssm import RSSM

    b, t, a, e = 3, 6, 2, 7
    rng = np.random.default_rng(5)
    actions = jnp.asarray(rng.normal(size=(b, t, a)), jnp.float32)
    embeds = jnp.asarray(rng.normal(size=(b, t, e)), jnp.float32)
    is_first = jnp.asarray(rng.random((b, t)) < 0.25)
    w_deter = jnp.asarray(rng.normal(size=(b, t, 16)), jnp.float32)
    w_logits = jnp.asarray(rng.normal(size=(b, t, 3, 4)), jnp.float32)
    start = {"deter": jnp.zeros((b, 16)), "stoch": jnp.zeros((b, 3, 4))}
    grads = {}
    for remat in (True, False):
        rssm = RSSM(
            deter=16, hidden=8, stoch=3, classes=4, blocks=4, act_dim=a, embed_size=e,
            unimix=0.01, rngs=nnx.Rngs(0), remat_observe=remat,
        )  # fmt: skip
        graphdef, params = nnx.split(rssm)

        def loss(params, embeds, graphdef=graphdef):
            states, logits = nnx.merge(graphdef, params).observe(
                start, actions, embeds, is_first, jax.random.key(1)
            )
            return (states["deter"] * w_deter).sum() + ((logits + states["stoch"]) * w_logits).sum()

        grads[remat] = jax.value_and_grad(loss, (0, 1))(params, embeds)
    np.testing.assert_allclose(grads[False][0], grads[True][0], rtol=1e-6)
    flat_hoisted, flat_plain = jax.tree.leaves(grads[False][1]), jax.tree.leaves(grads[True][1])
    assert len(flat_hoisted) == len(flat_plain) > 20
    for x, y in zip(flat_hoisted, flat_plain, strict=True):
        np.testing.assert_allclose(x, y, rtol=2e-5, atol=2e-5 * float(jnp.abs(y).max() + 1))
