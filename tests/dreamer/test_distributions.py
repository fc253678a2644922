import jax
import jax.numpy as jnp
import numpy as np

from genreward_jax.dreamer import distributions as d


def test_symlog_symexp_round_trip():
    x = jnp.array([-1e6, -123.4, -1.0, -1e-3, 0.0, 1e-3, 0.5, 7.0, 1e6], jnp.float32)
    np.testing.assert_allclose(d.symexp(d.symlog(x)), x, rtol=1e-5)
    np.testing.assert_allclose(
        d.symlog(jnp.array([0.0, np.e - 1, -(np.e - 1)])), [0.0, 1.0, -1.0], rtol=1e-6
    )


def test_bins_symmetric_with_zero_and_range():
    bins = d.symexp_bins(255)
    assert bins.shape == (255,) and bins.dtype == np.float32
    np.testing.assert_array_equal(bins, -bins[::-1])
    assert bins[127] == 0.0
    np.testing.assert_allclose(bins[-1], np.expm1(20.0), rtol=1e-6)
    assert np.all(np.diff(bins) > 0)


def test_twohot_round_trip():
    bins = jnp.asarray(d.symexp_bins(255))
    targets = jnp.array([-5000.0, -3.3, -0.01, 0.0, 0.25, 1.0, 42.0, 1e5], jnp.float32)
    encoded = d.twohot_encode(targets, bins)
    np.testing.assert_allclose(encoded.sum(-1), 1.0, rtol=1e-6)
    assert int((encoded > 0).sum(-1).max()) <= 2
    np.testing.assert_allclose((encoded * bins).sum(-1), targets, rtol=1e-4, atol=1e-6)
    # Logits equal to the log two-hot decode back to the target.
    logits = jnp.log(jnp.maximum(encoded, 1e-30))
    np.testing.assert_allclose(d.twohot_mean(logits, bins), targets, rtol=1e-4, atol=1e-6)


def test_twohot_outside_range_goes_to_edge():
    bins = jnp.asarray(d.symexp_bins(15))
    encoded = d.twohot_encode(jnp.array([1e12, -1e12]), bins)
    np.testing.assert_array_equal(encoded[0], np.eye(15)[-1])
    np.testing.assert_array_equal(encoded[1], np.eye(15)[0])


def test_twohot_mean_exactly_zero_for_uniform_logits():
    bins = jnp.asarray(d.symexp_bins(255))
    assert float(d.twohot_mean(jnp.zeros((7, 255)), bins).max()) == 0.0
    assert float(jnp.abs(d.twohot_mean(jnp.zeros((7, 255)), bins)).max()) == 0.0


def test_twohot_loss_minimised_by_target():
    bins = jnp.asarray(d.symexp_bins(255))
    target = jnp.array(3.7)
    good = jnp.log(jnp.maximum(d.twohot_encode(target, bins), 1e-30))
    assert float(d.twohot_loss(good, bins, target)) < float(
        d.twohot_loss(jnp.zeros(255), bins, target)
    )


def test_unimix_and_kl():
    logits = jnp.array([[10.0, -10.0, -10.0, -10.0]])
    mixed = d.unimix_logits(logits, 0.01)
    probs = np.exp(np.asarray(mixed))
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
    assert probs.min() >= 0.01 / 4 - 1e-7
    assert float(d.categorical_kl(mixed, mixed)[0]) == 0.0
    other = d.unimix_logits(jnp.zeros((1, 4)), 0.01)
    p, q = probs[0], np.exp(np.asarray(other))[0]
    np.testing.assert_allclose(
        d.categorical_kl(mixed, other)[0], (p * np.log(p / q)).sum(), rtol=1e-5
    )


def test_onehot_sample_straight_through():
    logits = d.unimix_logits(jax.random.normal(jax.random.key(0), (1000, 4)), 0.01)
    sample = d.onehot_sample(jax.random.key(1), logits)
    np.testing.assert_array_equal(np.asarray(sample).sum(-1), 1.0)
    assert set(np.unique(np.asarray(sample)).tolist()) <= {0.0, 1.0}
    # Gradient flows to the probabilities (straight-through), not zero.
    grad = jax.grad(lambda lg: (d.onehot_sample(jax.random.key(1), lg) * jnp.arange(4.0)).sum())(
        logits
    )
    assert float(jnp.abs(grad).sum()) > 0
    # Empirical frequencies follow the distribution.
    freq = np.asarray(d.onehot_sample(jax.random.key(2), jnp.repeat(logits[:1], 20000, 0))).mean(0)
    np.testing.assert_allclose(freq, np.exp(np.asarray(logits[0])), atol=0.02)


def test_bounded_normal():
    mean, std = d.bounded_normal(
        jnp.array([-100.0, 0.0, 100.0]), jnp.array([-100.0, 0.0, 100.0]), 0.1, 1.0
    )
    np.testing.assert_allclose(mean, [-1.0, 0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(std, [0.1, 0.1 + 0.9 / (1 + np.exp(-2.0)), 1.0], rtol=1e-5)
    x = jnp.array([[0.3, -0.2]])
    m, s = jnp.array([[0.1, 0.0]]), jnp.array([[0.5, 2.0]])
    ref = sum(
        -0.5 * ((xi - mi) / si) ** 2 - np.log(si) - 0.5 * np.log(2 * np.pi)
        for xi, mi, si in zip([0.3, -0.2], [0.1, 0.0], [0.5, 2.0], strict=True)
    )
    np.testing.assert_allclose(d.normal_logp(m, s, x)[0], ref, rtol=1e-5)
    np.testing.assert_allclose(
        d.normal_entropy(s)[0],
        sum(0.5 * np.log(2 * np.pi * si**2) + 0.5 for si in [0.5, 2.0]),
        rtol=1e-5,
    )


def test_twohot_loss_and_gradient_equal_the_dense_cross_entropy():
    bins = jnp.asarray(d.symexp_bins(15))
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(6, 15)) * 2, jnp.float32)
    # Inside, on a bin, at both edges and beyond them.
    target = jnp.array([0.3, -2.0, float(bins[4]), float(bins[0]), 1e12, -1e12], jnp.float32)

    def dense(logits):
        encoded = d.twohot_encode(target, bins)
        return -(encoded * jax.nn.log_softmax(logits, -1)).sum(-1)

    np.testing.assert_allclose(d.twohot_loss(logits, bins, target), dense(logits), rtol=1e-5)
    np.testing.assert_allclose(
        jax.grad(lambda x: d.twohot_loss(x, bins, target).sum())(logits),
        jax.grad(lambda x: dense(x).sum())(logits),
        rtol=1e-5,
        atol=1e-6,
    )


def test_twohot_mean_equals_the_expectation():
    bins = d.symexp_bins(15)
    logits = np.random.default_rng(0).normal(size=(4, 15)).astype(np.float32) * 3
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    expected = (probs.astype(np.float64) * bins).sum(-1)
    np.testing.assert_allclose(
        d.twohot_mean(jnp.asarray(logits), jnp.asarray(bins)), expected, rtol=1e-4, atol=1e-4
    )


def test_twohot_losses_weighted_sum_and_gradient_equal_the_dense_cross_entropies():
    bins = jnp.asarray(d.symexp_bins(15))
    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.normal(size=(2, 3, 15)) * 2, jnp.float32)
    returns = jnp.asarray([[0.3, -2.0, float(bins[4])], [float(bins[0]), 1e12, -1e12]])
    slow = jnp.asarray(rng.normal(size=(2, 3)) * 30, jnp.float32)

    def dense(logits):
        logp = jax.nn.log_softmax(logits, -1)
        ce = [-(d.twohot_encode(t, bins) * logp).sum(-1) for t in (returns, slow)]
        return ce[0] + 0.3 * ce[1]

    def written(logits):
        return d.twohot_losses(logits, bins, (returns, slow), (1.0, 0.3))

    np.testing.assert_allclose(written(logits), dense(logits), rtol=1e-5)
    grad = jax.random.normal(jax.random.key(0), (2, 3))  # a cotangent that is not all ones
    np.testing.assert_allclose(
        jax.vjp(written, logits)[1](grad)[0],
        jax.vjp(dense, logits)[1](grad)[0],
        rtol=1e-5,
        atol=1e-6,
    )


def test_onehot_inverse_cdf_picks_the_first_class_whose_cumulative_probability_exceeds_u():
    probs = jnp.asarray([[0.1, 0.2, 0.3, 0.4]] * 7, jnp.float32)
    # 0.1 is the first cumulative probability itself, which does not exceed it.
    uniform = jnp.asarray([0.0, 0.05, 0.1, 0.15, 0.45, 0.61, 0.999], jnp.float32)
    picked = np.asarray(d.onehot_inverse_cdf(uniform, probs)).argmax(-1)
    np.testing.assert_array_equal(picked, [0, 0, 1, 1, 2, 3, 3])
    # Sampled with uniform noise, the classes' frequencies follow the probabilities.
    logits = d.unimix_logits(jax.random.normal(jax.random.key(3), (1, 5)) * 2, 0.01)
    many = jnp.repeat(jnp.exp(logits), 40000, 0)
    noise = jax.random.uniform(jax.random.key(4), (40000,))
    freq = np.asarray(d.onehot_inverse_cdf(noise, many)).mean(0)
    np.testing.assert_allclose(freq, np.exp(np.asarray(logits[0])), atol=0.01)


def test_unimix_probs_mix_the_softmax_with_the_uniform():
    logits = np.random.default_rng(5).normal(size=(3, 4)).astype(np.float32) * 4
    softmax = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    probs = d.unimix_probs(jnp.asarray(logits), 0.01)
    np.testing.assert_allclose(probs, 0.99 * softmax + 0.01 / 4, rtol=1e-5)
    np.testing.assert_allclose(
        jnp.exp(d.unimix_logits(jnp.asarray(logits), 0.01)), probs, rtol=1e-5
    )
