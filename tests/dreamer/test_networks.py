import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genreward_jax.dreamer import networks as nw


def test_linear_init_statistics_and_zero_bias():
    layer = nw.Linear(512, 256, rngs=nnx.Rngs(0))
    kernel = np.asarray(layer.kernel[...])
    np.testing.assert_allclose(kernel.std(), 1 / np.sqrt(512), rtol=0.05)
    assert np.abs(kernel).max() <= 2 * 1.1368 / np.sqrt(512) + 1e-6
    np.testing.assert_array_equal(np.asarray(layer.bias[...]), 0.0)
    zero = nw.Linear(8, 3, rngs=nnx.Rngs(0), outscale=0.0)
    np.testing.assert_array_equal(np.asarray(zero(jnp.ones((2, 8)))), 0.0)


def test_linear_compute_dtype():
    layer = nw.Linear(8, 3, rngs=nnx.Rngs(0), dtype=jnp.bfloat16)
    out = layer(jnp.ones((2, 8), jnp.float32))
    assert out.dtype == jnp.bfloat16 and out.shape == (2, 3)
    assert layer.kernel[...].dtype == jnp.float32


def test_block_linear_is_block_diagonal_dense():
    layer = nw.BlockLinear(12, 8, 4, rngs=nnx.Rngs(0))
    kernel = np.asarray(layer.kernel[...])  # [4, 3, 2]
    assert kernel.shape == (4, 3, 2)
    dense = np.zeros((12, 8), np.float32)
    for g in range(4):
        dense[g * 3 : (g + 1) * 3, g * 2 : (g + 1) * 2] = kernel[g]
    x = np.random.default_rng(0).normal(size=(5, 12)).astype(np.float32)
    np.testing.assert_allclose(layer(jnp.asarray(x)), x @ dense, rtol=1e-5, atol=1e-6)
    # Fan-in counts the whole input (official convention).
    big = nw.BlockLinear(1024, 1024, 8, rngs=nnx.Rngs(1))
    np.testing.assert_allclose(np.asarray(big.kernel[...]).std(), 1 / np.sqrt(1024), rtol=0.05)


def test_rmsnorm_float32_math_and_dtype():
    norm = nw.RMSNorm(6, eps=1e-4)
    x = np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32)
    ref = x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-4)
    np.testing.assert_allclose(norm(jnp.asarray(x)), ref, rtol=1e-5)
    out = norm(jnp.asarray(x, jnp.bfloat16))
    assert out.dtype == jnp.bfloat16


def test_conv_same_padding_shapes():
    conv = nw.Conv2D(3, 8, 5, rngs=nnx.Rngs(0))
    assert conv(jnp.zeros((2, 16, 16, 3))).shape == (2, 16, 16, 8)


def test_mlp_and_heads_shapes():
    mlp = nw.MLP(10, 3, 16, rngs=nnx.Rngs(0))
    assert mlp(jnp.ones((4, 10))).shape == (4, 16)
    head = nw.Head(10, 1, 16, 255, rngs=nnx.Rngs(0), outscale=0.0)
    out = head(jnp.ones((2, 3, 10)))
    assert out.shape == (2, 3, 255) and out.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(out), 0.0)
    actor = nw.Actor(10, 2, 16, 4, rngs=nnx.Rngs(0), outscale=0.01)
    mean, std = actor(jnp.ones((5, 10)))
    assert mean.shape == std.shape == (5, 4)
    assert float(jnp.abs(mean).max()) < 0.1


def test_encoder_decoder_shapes_images_and_vectors():
    kw = dict(units=16, depth=2, mults=(2, 3, 4, 4), kernel=5, rngs=nnx.Rngs(0))
    enc = nw.Encoder({"state": 39}, {"image": (64, 64, 3)}, layers=2, **kw)
    obs = {"state": jnp.ones((5, 39)), "image": jnp.zeros((5, 64, 64, 3), jnp.uint8)}
    # Jitted through split/merge like the agent does (eager convolutions compile per op).
    enc_graph, enc_state = nnx.split(enc)
    embed = jax.jit(lambda s, o: nnx.merge(enc_graph, s)(o))(enc_state, obs)
    assert enc.out_size == 16 + 4 * 4 * 8
    assert embed.shape == (5, enc.out_size)
    dec = nw.Decoder(
        {"state": 39}, {"image": (64, 64, 3)}, deter=32, stoch_flat=12, layers=2, blocks=4, **kw
    )
    dec_graph, dec_state = nnx.split(dec)
    recons = jax.jit(lambda s, d, z: nnx.merge(dec_graph, s)(d, z))(
        dec_state, jnp.ones((5, 32)), jnp.ones((5, 3, 4))
    )
    assert recons["state"].shape == (5, 39) and recons["state"].dtype == jnp.float32
    assert recons["image"].shape == (5, 64, 64, 3)
    assert float(recons["image"].min()) >= 0.0 and float(recons["image"].max()) <= 1.0


def test_encoder_applies_symlog_to_vectors():
    enc = nw.Encoder(
        {"state": 3}, {}, units=8, layers=1, depth=2, mults=(2,), kernel=5, rngs=nnx.Rngs(0)
    )
    big = enc({"state": jnp.full((1, 3), 1e6)})
    assert bool(jnp.isfinite(big).all())
    x = jnp.array([[1e6, -2.0, 0.5]])
    manual = enc.mlp(jnp.sign(x) * jnp.log1p(jnp.abs(x)))
    np.testing.assert_allclose(enc({"state": x}), manual, rtol=1e-6)


def test_image_encoder_rejects_bad_size():
    try:
        nw.Encoder(
            {},
            {"image": (60, 60, 3)},
            units=8,
            layers=1,
            depth=2,
            mults=(2, 3, 4, 4),
            kernel=5,
            rngs=nnx.Rngs(0),
        )
    except ValueError as err:
        assert "divisible" in str(err)
    else:
        raise AssertionError("expected ValueError")


def test_jit_through_split_merge():
    mlp = nw.MLP(4, 2, 8, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(mlp)
    params = nnx.to_pure_dict(state)
    f = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))
    np.testing.assert_allclose(f(params, jnp.ones((1, 4))), mlp(jnp.ones((1, 4))), rtol=1e-6)


def _upsampled_conv_outputs(kernel: int, rng) -> list:
    """Value and gradients (kernel, bias, input) of the direct convolution of the nearest x2
    upsampled map and of Conv2D.upsampled, under the same weights and a random probe."""
    conv = nw.Conv2D(4, 3, kernel, rngs=nnx.Rngs(kernel))
    conv.bias[...] = jnp.asarray(rng.normal(size=3), jnp.float32)
    graphdef, params = nnx.split(conv)
    x = jnp.asarray(rng.normal(size=(2, 5, 6, 4)), jnp.float32)
    probe = jnp.asarray(rng.normal(size=(2, 10, 12, 3)), jnp.float32)

    def direct(p, x):
        return nnx.merge(graphdef, p)(x.repeat(2, 1).repeat(2, 2))

    def folded(p, x):
        return nnx.merge(graphdef, p).upsampled(x)

    outputs = []
    for f in (direct, folded):
        value = jax.jit(f)(params, x)
        grads = jax.jit(jax.grad(lambda p, x, f=f: (f(p, x) * probe).sum(), argnums=(0, 1)))(
            params, x
        )
        outputs.append([value, *jax.tree.leaves(grads)])
    return outputs


def test_upsampled_convolution_is_the_convolution_of_the_upsampled_map():
    """Conv2D.upsampled folds the nearest x2 upsample into a 3x3 convolution per output phase:
    values and all gradients equal the direct convolution of the upsampled map (odd kernels
    3 and 5, borders included)."""
    rng = np.random.default_rng(0)
    for kernel in (3, 5):
        want, got = _upsampled_conv_outputs(kernel, rng)
        assert got[0].shape == (2, 10, 12, 3)
        for a, b in zip(want, got, strict=True):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-4)
