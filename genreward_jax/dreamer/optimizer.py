"""The one LaProp optimizer chain of DreamerV3, as optax transformations.

Order: adaptive gradient clipping per tensor -> divide by the bias-corrected RMS of gradients
-> bias-corrected momentum of the scaled gradients (LaProp: momentum after normalisation,
unlike Adam) -> learning rate with linear warmup.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from genreward_jax.dreamer.config import DreamerConfig

f32 = jnp.float32


def scale_by_rms(beta: float = 0.999, eps: float = 1e-20) -> optax.GradientTransformation:
    """g / (sqrt(nu_hat) + eps) with nu the bias-corrected EMA of g^2."""

    def init_fn(params):
        return (jnp.zeros((), jnp.int32), jax.tree.map(lambda p: jnp.zeros_like(p, f32), params))

    def update_fn(updates, state, params=None):
        del params
        count, nu = state
        count = optax.safe_int32_increment(count)
        nu = jax.tree.map(lambda v, u: beta * v + (1 - beta) * jnp.square(u), nu, updates)
        correction = 1 - beta ** count.astype(f32)
        updates = jax.tree.map(lambda u, v: u / (jnp.sqrt(v / correction) + eps), updates, nu)
        return updates, (count, nu)

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_momentum(beta: float = 0.9) -> optax.GradientTransformation:
    """Bias-corrected EMA of the (already RMS-scaled) updates."""

    def init_fn(params):
        return (jnp.zeros((), jnp.int32), jax.tree.map(lambda p: jnp.zeros_like(p, f32), params))

    def update_fn(updates, state, params=None):
        del params
        count, mu = state
        count = optax.safe_int32_increment(count)
        mu = jax.tree.map(lambda m, u: beta * m + (1 - beta) * u, mu, updates)
        correction = 1 - beta ** count.astype(f32)
        return jax.tree.map(lambda m: m / correction, mu), (count, mu)

    return optax.GradientTransformation(init_fn, update_fn)


def learning_rate(config: DreamerConfig) -> optax.Schedule:
    """Linear warmup from 0 to lr over ``warmup`` updates, then constant."""
    if not config.warmup:
        return optax.constant_schedule(config.lr)
    return optax.linear_schedule(0.0, config.lr, config.warmup)


# ---------------------------------------------------------------- flat layout


class FlatLayout(NamedTuple):
    """Static layout that packs a pytree of float arrays into one [rows, width] matrix.

    Each leaf is zero-padded to whole rows, so per-leaf sums are per-row sums followed by a
    segment sum over that leaf's rows. Running the optimizer on one matrix instead of ~100
    tensors turns hundreds of tiny kernels into a handful, which matters for XLA compile time
    on CPU (one LLVM kernel per fusion) and for per-kernel overhead everywhere."""

    treedef: Any
    shapes: tuple[tuple[int, ...], ...]
    row_offsets: tuple[int, ...]  # first row of each leaf, plus the total row count
    width: int

    @property
    def rows(self) -> int:
        return self.row_offsets[-1]

    @property
    def leaves(self) -> int:
        return len(self.shapes)


def make_layout(tree: Any, width: int = 128) -> FlatLayout:
    """Layout for a pytree of arrays or ShapeDtypeStructs."""
    leaves, treedef = jax.tree.flatten(tree)
    shapes = tuple(tuple(int(d) for d in leaf.shape) for leaf in leaves)
    offsets = [0]
    for shape in shapes:
        offsets.append(offsets[-1] + -(-math.prod(shape) // width))
    return FlatLayout(treedef, shapes, tuple(offsets), width)


def flatten(layout: FlatLayout, tree: Any) -> jax.Array:
    """Pytree -> f32 [rows, width] (leaves padded with zeros to whole rows)."""
    parts = []
    for leaf, start, stop in zip(
        jax.tree.leaves(tree), layout.row_offsets[:-1], layout.row_offsets[1:], strict=True
    ):
        flat = leaf.reshape(-1).astype(f32)
        parts.append(jnp.pad(flat, (0, (stop - start) * layout.width - flat.size)))
    return jnp.concatenate(parts).reshape((layout.rows, layout.width))


def unflatten(layout: FlatLayout, matrix: jax.Array) -> Any:
    """Inverse of ``flatten``."""
    flat = matrix.reshape(-1)
    leaves = [
        flat[start * layout.width : start * layout.width + math.prod(shape)].reshape(shape)
        for shape, start in zip(layout.shapes, layout.row_offsets[:-1], strict=False)
    ]
    return jax.tree.unflatten(layout.treedef, leaves)


def _row_leaf_ids(layout: FlatLayout) -> jax.Array:
    """Leaf index of every row [rows], computed in the graph (no rows-sized constant)."""
    starts = jnp.asarray(layout.row_offsets[1:-1], jnp.int32)
    rows = jnp.arange(layout.rows, dtype=jnp.int32)
    return (rows[:, None] >= starts[None, :]).sum(-1, dtype=jnp.int32)


def clip_by_agc_flat(
    layout: FlatLayout, clip: float = 0.3, pmin: float = 1e-3
) -> optax.GradientTransformation:
    """Adaptive gradient clipping on a ``flatten``-ed matrix: each leaf's gradient scaled so that
    ||g|| <= clip * max(pmin, ||p||), with per-leaf norms from row sums (the per-tensor chain it
    equals is the reference in tests/dreamer/test_losses.py)."""

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("clip_by_agc_flat needs params")
        ids = _row_leaf_ids(layout)

        def leaf_norms(x):
            rows = jnp.square(x).sum(-1)
            return jnp.sqrt(jax.ops.segment_sum(rows, ids, layout.leaves, indices_are_sorted=True))

        upper = clip * jnp.maximum(pmin, leaf_norms(params))
        factor = 1.0 / jnp.maximum(1.0, leaf_norms(updates) / upper)
        return updates * factor[ids][:, None], state

    return optax.GradientTransformation(init_fn, update_fn)


def make_flat_optimizer(config: DreamerConfig, layout: FlatLayout) -> optax.GradientTransformation:
    """The LaProp chain for parameters packed with ``flatten(layout, ...)``."""
    return optax.chain(
        clip_by_agc_flat(layout, config.agc, config.agc_pmin),
        scale_by_rms(config.beta2, config.eps),
        scale_by_momentum(config.beta1),
        optax.scale_by_learning_rate(learning_rate(config)),
    )
