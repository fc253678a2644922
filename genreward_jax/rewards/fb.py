"""Forward-backward (FB) representation: the frame-level goal reward of GenReward.

FB factorises the discounted successor measure of the behaviour policy,
``M(s, a, ds') ≈ F(s, a, z)ᵀ B(s') ρ(ds')``, where ρ is the distribution of next states in replay.
For a goal state g, ``Q(s, a) = F(s, a, z_g)ᵀ z_g`` with ``z_g = B(g)`` is then the expected
discounted number of visits to g, divided by ρ(g): high where the goal is reached soon.

Unlike the authors' release (B only ever sees the goal, γ = 1), this is the standard FB loss:
B is trained on the replay's next states with a temporal-difference loss on the full N×N matrix
of measures, plus an orthonormality penalty that removes B's scale ambiguity.

Everything here is a pure function over plain dicts of arrays, so the same code runs inside
DreamerV3's jitted train step and in the tabular tests.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

f32 = jnp.float32
sg = jax.lax.stop_gradient

Params = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class FBConfig:
    """FB hyperparameters (defaults: the paper's lr and τ, the release's z size)."""

    z_dim: int = 64
    hidden: int = 512
    f_heads: int = 2
    discount: float = 0.98
    lr: float = 1e-4
    tau: float = 0.01
    ortho_coef: float = 1.0
    goal_mix_prob: float = 0.5
    target_reduce: str = "min"
    layernorm_eps: float = 1e-5
    standardise_goal_inputs: bool = True  # B's inputs as per-dimension z-scores over replay

    def __post_init__(self):
        if self.target_reduce not in ("min", "mean"):
            raise ValueError(f"target_reduce must be 'min' or 'mean', got {self.target_reduce!r}")
        if self.z_dim < 1 or self.hidden < 1 or self.f_heads < 1:
            raise ValueError("z_dim, hidden and f_heads must be positive")
        if not 0.0 <= self.discount < 1.0:
            raise ValueError(f"discount must be in [0, 1), got {self.discount}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")


# ---------------------------------------------------------------------------- layers


def _dense_init(key: jax.Array, heads: int, din: int, dout: int) -> Params:
    """Head-stacked dense layer [heads, din, dout] with LeCun-uniform-style fan-in scaling."""
    bound = 1.0 / jnp.sqrt(din)
    return {
        "w": jax.random.uniform(key, (heads, din, dout), f32, -bound, bound),
        "b": jnp.zeros((heads, 1, dout), f32),
    }


def _dense(p: Params, x: jax.Array) -> jax.Array:
    """x [H, N, din] -> [H, N, dout] (one weight matrix per head)."""
    return jnp.einsum("hni,hio->hno", x, p["w"]) + p["b"]


def _layernorm(x: jax.Array, eps: float) -> jax.Array:
    mean = x.mean(-1, keepdims=True)
    var = jnp.square(x - mean).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps)


def _embed_init(key: jax.Array, heads: int, din: int, hidden: int) -> Params:
    k1, k2 = jax.random.split(key)
    return {"l1": _dense_init(k1, heads, din, hidden), "l2": _dense_init(k2, heads, hidden, hidden)}


def _embed(p: Params, x: jax.Array, eps: float) -> jax.Array:
    """The usual FB input block: Linear → LayerNorm → tanh → Linear → ReLU."""
    return jax.nn.relu(_dense(p["l2"], jnp.tanh(_layernorm(_dense(p["l1"], x), eps))))


def project_to_sphere(x: jax.Array) -> jax.Array:
    """Rescale the last axis to norm sqrt(d): z and B(s) live on this sphere."""
    d = x.shape[-1]
    return jnp.sqrt(d) * x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


# ---------------------------------------------------------------------------- networks


def init_fb(
    key: jax.Array, config: FBConfig, state_dim: int, action_dim: int, goal_dim: int
) -> Params:
    """Parameters of F (``f_heads`` independent heads) and B.

    F sees the agent's state (e.g. DreamerV3's features) and the action; B sees goal-space
    features (DINOv3 of a frame), so the goal image and replay frames share one space."""
    c = config
    keys = jax.random.split(key, 7)
    h = c.f_heads
    return {
        "F": {
            "sa": _embed_init(keys[0], h, state_dim + action_dim, c.hidden),
            "sz": _embed_init(keys[1], h, state_dim + c.z_dim, c.hidden),
            "out1": _dense_init(keys[2], h, 2 * c.hidden, c.hidden),
            "out2": _dense_init(keys[3], h, c.hidden, c.z_dim),
        },
        "B": {
            "l1": _dense_init(keys[4], 1, goal_dim, c.hidden),
            "l2": _dense_init(keys[5], 1, c.hidden, c.hidden),
            "out": _dense_init(keys[6], 1, c.hidden, c.z_dim),
        },
    }


def forward_embedding(
    params: Params, config: FBConfig, state: jax.Array, action: jax.Array, z: jax.Array
) -> jax.Array:
    """F(s, a, z): state [N, S], action [N, A], z [N, Z] -> [heads, N, Z]."""
    f = params["F"]
    h = config.f_heads
    sa = jnp.concatenate([state, action], -1)
    sz = jnp.concatenate([state, z], -1)
    sa, sz = (jnp.broadcast_to(x, (h, *x.shape)) for x in (sa, sz))
    x = jnp.concatenate(
        [_embed(f["sa"], sa, config.layernorm_eps), _embed(f["sz"], sz, config.layernorm_eps)], -1
    )
    return _dense(f["out2"], jax.nn.relu(_dense(f["out1"], x)))


def backward_embedding(params: Params, config: FBConfig, goal_feat: jax.Array) -> jax.Array:
    """B(g): goal-space features [N, G] -> [N, Z] on the sphere of radius sqrt(Z)."""
    b = params["B"]
    x = jnp.tanh(_layernorm(_dense(b["l1"], goal_feat[None]), config.layernorm_eps))
    x = jax.nn.relu(_dense(b["l2"], x))
    return project_to_sphere(_dense(b["out"], x)[0])


# ---------------------------------------------------------------------------- training


def sample_z(
    key: jax.Array, config: FBConfig, next_goal_feat: jax.Array, params: Params
) -> jax.Array:
    """One z per row [N, Z]: a normalised Gaussian or, with probability ``goal_mix_prob``,
    B of another replay state (so F is trained on the z's that goal rewards will query)."""
    n = next_goal_feat.shape[0]
    k_gauss, k_perm, k_mix = jax.random.split(key, 3)
    gauss = project_to_sphere(jax.random.normal(k_gauss, (n, config.z_dim), f32))
    other = next_goal_feat[jax.random.permutation(k_perm, n)]
    goal_z = sg(backward_embedding(params, config, other))
    use_goal = jax.random.uniform(k_mix, (n, 1)) < config.goal_mix_prob
    return jnp.where(use_goal, goal_z, gauss)


def _offdiag_mean(x: jax.Array, weight: jax.Array) -> jax.Array:
    """Weighted mean over i != j of x [..., N, N] with pair weights [N, N]."""
    n = x.shape[-1]
    w = weight * (1.0 - jnp.eye(n, dtype=x.dtype))
    return (x * w).sum((-2, -1)) / jnp.maximum(w.sum(), 1.0)


def fb_loss(
    params: Params, target: Params, config: FBConfig, batch: dict[str, jax.Array], z: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The FB loss (Eq. 8): temporal-difference loss of M = FᵀB plus B's orthonormality penalty.

    batch (all [N, ...], one transition a row):
      state [N, S], action [N, A]        the transition's start (s, a)
      next_state [N, S], next_action [N, A]   s' and the replay's next action a'
      next_goal_feat [N, G]              goal-space features of s' (B's input)
      discount [N]                       γ·(1 − terminal)
      mask [N]                           1 for real transitions (0 across episode ends)

    M_ij = F(s_i, a_i, z_i)ᵀ B(s'_j); target M̄_ij = γ_i F̄(s'_i, a'_i, z_i)ᵀ B̄(s'_j);
    loss = ½ mean_{i≠j} (M_ij − M̄_ij)² − mean_i M_ii, summed over F heads, with the target
    reduced over heads by ``target_reduce``."""
    c = config
    mask = batch["mask"].astype(f32)
    pair = mask[:, None] * mask[None, :]
    b_next = backward_embedding(params, c, batch["next_goal_feat"])  # [N, Z]
    f = forward_embedding(params, c, batch["state"], batch["action"], z)  # [H, N, Z]
    m = jnp.einsum("hiz,jz->hij", f, b_next)  # [H, N, N]

    target_f = forward_embedding(target, c, batch["next_state"], batch["next_action"], z)
    target_b = backward_embedding(target, c, batch["next_goal_feat"])
    target_m = jnp.einsum("hiz,jz->hij", target_f, target_b)
    target_m = target_m.min(0) if c.target_reduce == "min" else target_m.mean(0)
    target_m = sg(batch["discount"][:, None] * target_m)  # [N, N]

    offdiag = 0.5 * _offdiag_mean(jnp.square(m - target_m[None]), pair)  # [H]
    diag = (jnp.diagonal(m, axis1=-2, axis2=-1) * mask).sum(-1) / jnp.maximum(mask.sum(), 1.0)
    td = (offdiag - diag).sum()

    cov = b_next @ b_next.T  # [N, N]
    ortho = _offdiag_mean(jnp.square(cov), pair) - 2.0 * (
        jnp.diagonal(cov) * mask
    ).sum() / jnp.maximum(mask.sum(), 1.0)
    loss = td + c.ortho_coef * ortho
    metrics = {"fb_td": td, "fb_ortho": ortho, "fb_diag": diag.mean(), "fb_offdiag": offdiag.mean()}
    return loss, metrics


def soft_update(target: Params, online: Params, tau: float) -> Params:
    """Polyak averaging: target ← (1 − τ)·target + τ·online."""
    return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)


def train_step(
    params: Params,
    target: Params,
    opt_state: Any,
    optimizer: optax.GradientTransformation,
    config: FBConfig,
    batch: dict[str, jax.Array],
    key: jax.Array,
) -> tuple[Params, Params, Any, jax.Array]:
    """One optimizer step of FB on its own (offline: benchmarks and tests; inside DreamerV3 FB
    shares the agent's gradient instead, see fb_extra_loss.py): z drawn by ``sample_z``, the FB
    loss, then the soft target update. Returns (params, target, opt_state, loss)."""
    z = sample_z(key, config, batch["next_goal_feat"], params)
    (loss, _), grads = jax.value_and_grad(fb_loss, has_aux=True)(params, target, config, batch, z)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return params, soft_update(target, params, config.tau), opt_state, loss


# ---------------------------------------------------------------------------- reward


def goal_z(params: Params, config: FBConfig, goal_feat: jax.Array) -> jax.Array:
    """z_g = B(goal) for one goal feature [G] -> [Z]."""
    return backward_embedding(params, config, goal_feat[None])[0]


def fb_reward(
    params: Params, config: FBConfig, state: jax.Array, action: jax.Array, z_goal: jax.Array
) -> jax.Array:
    """The FB reward (Eq. 9), unnormalised: F(s, a, z_g)ᵀ z_g, averaged over F heads,
    [N, S] -> [N].
    z_goal is one goal [Z] or one per row [N, Z] (each row's own goal, e.g. a goal bank)."""
    z = jnp.broadcast_to(z_goal, (state.shape[0], z_goal.shape[-1]))
    return (
        jnp.einsum("hnz,nz->n", forward_embedding(params, config, state, action, z), z)
        / config.f_heads
    )


def normaliser_init(shape: tuple[int, ...] = ()) -> dict[str, jax.Array]:
    """Running mean and variance of a quantity of this shape: () for the raw FB reward, (G,) per
    dimension of B's inputs (count 0 means 'no data yet'; mean 0, var 1 is the identity)."""
    return {
        "mean": jnp.zeros(shape, f32),
        "var": jnp.ones(shape, f32),
        "count": jnp.zeros((), f32),
    }


def normaliser_update(
    stats: dict[str, jax.Array], values: jax.Array, weight: jax.Array, rate: float = 0.01
) -> dict[str, jax.Array]:
    """Running mean and variance over batches of weighted rows: values [N, ...], weight [N].
    An EMA at ``rate``, but never slower than the plain average of the batches so far (rate
    1/count: the first batch is taken as is, and ``rate=0`` keeps the average over all batches).

    Why normalise the FB reward: Q scales with 1/ρ(goal) and 1/(1 − γ), so a fixed β would mean
    something different for every goal and discount; after normalisation β is in units of
    standard deviations of the FB reward over replay. Why B's inputs, per dimension: B must tell
    states apart by its input, and image features can vary little next to their mean
    (random-weight DINOv3: cosine 0.99996 between the first and last frame of a task); as
    z-scores over replay the same features separate expert from random rollouts in
    bench/reward_quality.py (AUC 0.00 -> 1.00 with the tiny models). Why the average at first: a
    plain EMA from one batch lags for ~1/rate updates, while F's values still move fast."""
    w = weight.astype(f32).reshape(weight.shape + (1,) * (values.ndim - 1))
    total = jnp.maximum(w.sum(), 1.0)
    mean = (values * w).sum(0) / total
    var = (jnp.square(values - mean) * w).sum(0) / total
    r = jnp.maximum(rate, 1.0 / (stats["count"] + 1.0))
    return {
        "mean": (1 - r) * stats["mean"] + r * mean,
        "var": (1 - r) * stats["var"] + r * var,
        "count": stats["count"] + 1.0,
    }


def normalise(stats: dict[str, jax.Array], values: jax.Array) -> jax.Array:
    """(x − mean) / std with the running statistics (per dimension for vector statistics)."""
    return (values - stats["mean"]) * jax.lax.rsqrt(stats["var"] + 1e-8)
