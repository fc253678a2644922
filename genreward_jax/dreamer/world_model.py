"""World-model losses as pure functions of the merged networks and a batch.

Split in two so an extra loss (``agent.ExtraLoss``, e.g. FB) can sit between them: ``observe``
computes the posterior sequence, then ``world_model_losses`` takes whatever reward the caller
wants the reward head to learn.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from genreward_jax.dreamer import distributions as dists
from genreward_jax.dreamer.config import DreamerConfig
from genreward_jax.dreamer.rssm import State, features

f32 = jnp.float32
sg = jax.lax.stop_gradient


class Observed(NamedTuple):
    """Posterior sequence of a training batch (all [B, T, ...])."""

    states: State  # deter [B, T, D], stoch [B, T, S, K] (straight-through samples)
    post_logits: jax.Array  # [B, T, S, K] unimixed log-probs
    prior_logits: jax.Array  # [B, T, S, K]
    feat: jax.Array  # concat(deter, flat stoch) f32 [B, T, F]
    embed: jax.Array  # encoder output [B, T, E]


def observe(
    nets,
    obs: dict[str, jax.Array],
    prev_actions: jax.Array,
    is_first: jax.Array,
    start: State,
    key: jax.Array,
) -> Observed:
    """Encode obs [B, T, ...] and filter with the RSSM from ``start`` ({deter [B, D],
    stoch [B, S, K]}). prev_actions [B, T, A] is the action taken before each step."""
    b, t = is_first.shape
    flat = {k: v.reshape((b * t, *v.shape[2:])) for k, v in obs.items()}
    embed = nets.enc(flat)
    embed = embed.reshape((b, t, -1))
    states, post_logits = nets.dyn.observe(start, prev_actions, embed, is_first, key)
    prior_logits = nets.dyn.prior(states["deter"])
    return Observed(states, post_logits, prior_logits, features(states), embed)


def kl_losses(
    post_logits: jax.Array, prior_logits: jax.Array, free_nats: float
) -> tuple[jax.Array, jax.Array]:
    """dyn = KL(sg(post) || prior), rep = KL(post || sg(prior)), summed over latents and
    clipped below at free_nats (no gradient while under it). Shapes [...]."""
    dyn = dists.categorical_kl(sg(post_logits), prior_logits).sum(-1)
    rep = dists.categorical_kl(post_logits, sg(prior_logits)).sum(-1)
    return jnp.maximum(dyn, free_nats), jnp.maximum(rep, free_nats)


def world_model_losses(
    nets,
    config: DreamerConfig,
    observed: Observed,
    obs: dict[str, jax.Array],
    reward: jax.Array,
    is_terminal: jax.Array,
    bins: jax.Array,
) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """Per-step losses {name: [B, T]} (reconstruction per observation key, rew, con, dyn, rep)
    and metrics. reward [B, T] is the reward head's target (the combined reward)."""
    b, t = reward.shape
    losses, metrics = {}, {}
    losses["dyn"], losses["rep"] = kl_losses(
        observed.post_logits, observed.prior_logits, config.free_nats
    )
    deter = observed.states["deter"].reshape((b * t, -1))
    stoch = observed.states["stoch"].reshape((b * t, *observed.states["stoch"].shape[2:]))
    recons = nets.dec(deter, stoch)
    for key, pred in recons.items():
        pred = pred.reshape((b, t, *pred.shape[1:]))
        target = obs[key]
        if target.dtype == jnp.uint8:
            target = target.astype(f32) / 255.0
        else:
            target = dists.symlog(target.astype(f32))
        err = jnp.square(pred - sg(target))
        losses[f"rec_{key}"] = err.reshape((b, t, -1)).sum(-1)
    rew_logits = nets.rew(observed.feat)
    con_logit = nets.con(observed.feat)[..., 0]
    losses["rew"] = dists.twohot_loss(rew_logits, bins, reward.astype(f32))
    con_target = (1.0 - is_terminal.astype(f32)) * (1.0 - 1.0 / config.horizon)
    losses["con"] = -dists.binary_logp(con_logit, con_target)
    metrics["dyn_ent"] = dists.categorical_entropy(observed.prior_logits).sum(-1).mean()
    metrics["rep_ent"] = dists.categorical_entropy(observed.post_logits).sum(-1).mean()
    metrics["rew_pred"] = dists.twohot_mean(rew_logits, bins).mean()
    return losses, metrics


def loss_scale(config: DreamerConfig, name: str) -> float:
    """Scale of a world-model or actor-critic loss by name (all rec_* share scale_rec)."""
    if name.startswith("rec_"):
        return config.scale_rec
    return getattr(config, f"scale_{name}")
