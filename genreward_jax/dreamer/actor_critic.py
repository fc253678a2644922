"""Behaviour learning in imagination: lambda-returns, return normalisation, actor (REINFORCE)
and critic (two-hot, slow-critic regulariser) on imagined and, for the replay value loss,
replay returns. Pure functions.

Gradient routing (as in the official agent): imagination runs on stop-gradient parameters, so
no gradient flows through the rollout at all (the actor learns by REINFORCE on sg(actions));
the actor and critic see stop-gradient features; only the replay value loss sends gradient into
the world model, through the critic evaluated on replay posteriors.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from genreward_jax.dreamer import distributions as dists
from genreward_jax.dreamer.config import DreamerConfig
from genreward_jax.dreamer.networks import MLP, joint_first_layer
from genreward_jax.dreamer.rssm import State, features

f32 = jnp.float32
sg = jax.lax.stop_gradient


def lambda_return(
    last: jax.Array, term: jax.Array, rew: jax.Array, boot: jax.Array, disc: float, lam: float
) -> jax.Array:
    """TD(lambda) returns [N, T-1] from per-step inputs [N, T].

    Step t's return: rew[t+1] + live[t+1] * ((1 - cont) * boot[t+1] + cont * ret[t+1]) with
    live = (1 - term) * disc and cont = (1 - last) * lam; the last step bootstraps from
    boot[:, -1]. (The official signature also takes the values, unused beside ``boot``.)"""
    live = (1.0 - term.astype(f32))[:, 1:] * disc
    cont = (1.0 - last.astype(f32))[:, 1:] * lam
    interm = rew[:, 1:] + (1.0 - cont) * live * boot[:, 1:]

    def step(ret_next, inputs):
        interm_t, live_t, cont_t = inputs
        ret = interm_t + live_t * cont_t * ret_next
        return ret, ret

    def swap(x):
        return jnp.swapaxes(x, 0, 1)

    _, rets = jax.lax.scan(step, boot[:, -1], (swap(interm), swap(live), swap(cont)), reverse=True)
    return swap(rets)


def shift_to_arrival(
    transition_reward: jax.Array, valid_next: jax.Array | None = None
) -> jax.Array:
    """Reward of transition t ([N, L], indexed by the step it starts from: taking action t at
    state t) moved to the step it arrives at, where returns read rewards: out[:, t + 1] =
    transition_reward[:, t], out[:, 0] = 0. ``valid_next`` [N, L] zeroes arrivals that do not
    come from that transition (a new episode starting at t + 1)."""
    out = jnp.concatenate([jnp.zeros_like(transition_reward[:, :1]), transition_reward[:, :-1]], 1)
    return out if valid_next is None else out * valid_next.astype(out.dtype)


def retnorm_init() -> dict[str, jax.Array]:
    return {"lo": jnp.zeros((), f32), "hi": jnp.zeros((), f32)}


def retnorm_update(
    state: dict[str, jax.Array], ret: jax.Array, config: DreamerConfig
) -> tuple[dict[str, jax.Array], jax.Array, jax.Array]:
    """EMA of the P5/P95 of returns (no debiasing). Returns new state, offset, scale where
    scale = max(limit, hi - lo)."""
    ret = sg(ret.astype(f32))
    rate = config.retnorm_rate
    perc = jnp.percentile(ret, jnp.array([config.retnorm_lo, config.retnorm_hi]))
    lo = (1 - rate) * state["lo"] + rate * perc[0]
    hi = (1 - rate) * state["hi"] + rate * perc[1]
    return {"lo": lo, "hi": hi}, lo, jnp.maximum(config.retnorm_limit, hi - lo)


def imagine(
    frozen_nets,
    config: DreamerConfig,
    start: State,
    key: jax.Array,
    heads: Sequence[MLP] = (),
) -> tuple[State, jax.Array, list[jax.Array]]:
    """Roll out the policy in the world model from start states [N, ...] with frozen
    (stop-gradient) networks. Returns time-major states {deter [H+1, N, D],
    stoch [H+1, N, S, K]}, actions [H+1, N, A] and the first-layer pre-activations
    [H+1, N, units] of the policy's MLP and of each MLP in ``heads`` on every imagined state.

    The policy's first layer reads each state's features inside the scan anyway; the heads'
    first layers join it there as one matmul (``joint_first_layer``), so the losses never run
    the [N (H+1), F]-row first layers again (the largest matmuls on the imagined rows)."""
    mlps = [frozen_nets.pol.mlp, *heads]

    def policy(state, noise):
        pres = joint_first_layer(features(state), mlps)
        mean, std = dists.bounded_normal(
            *frozen_nets.pol.rest(pres[0]), config.policy_minstd, config.policy_maxstd
        )
        return mean + std * noise, pres

    act_dim = frozen_nets.pol.mean.kernel.shape[-1]
    states, actions, pres = frozen_nets.dyn.imagine(
        start, policy, config.imag_horizon, key, act_dim
    )
    return sg(states), sg(actions), [sg(p) for p in pres]


def imagination_losses(
    config: DreamerConfig,
    policy_out: tuple[jax.Array, jax.Array],
    actions: jax.Array,
    rew: jax.Array,
    con: jax.Array,
    val: jax.Array,
    slow_val: jax.Array,
    retnorm: dict[str, jax.Array],
) -> tuple[jax.Array, jax.Array, jax.Array, dict, dict]:
    """Actor loss and critic targets on imagined trajectories.

    Per-step predictions on the features [N, H+1, F] and actions [N, H+1, A] from
    ``imagine``: the trainable actor's raw outputs policy_out (mean, std) [N, H+1, A] each,
    reward rew [N, H+1] and continue probability con [N, H+1] (frozen heads), the critic's
    prediction val [N, H+1] and the slow critic's slow_val [N, H+1].
    Returns the policy loss [N], the imagined returns [N, H] (the critic's targets, with
    ``critic_losses``), their weights [N, H], the new retnorm state and metrics."""
    rew, con, val, slow_val = sg(rew), sg(con), sg(val), sg(slow_val)
    weight = jnp.cumprod(con, 1)  # disc folded in con
    ret = lambda_return(jnp.zeros_like(con), 1.0 - con, rew, val, 1.0, config.lam)
    retnorm, _, scale = retnorm_update(retnorm, ret, config)
    adv = (ret - val[:, :-1]) / scale

    mean_raw, std_raw = policy_out
    mean, std = dists.bounded_normal(
        mean_raw[:, :-1], std_raw[:, :-1], config.policy_minstd, config.policy_maxstd
    )
    logpi = dists.normal_logp(mean, std, sg(actions[:, :-1]))
    ent = dists.normal_entropy(std)
    policy = weight[:, :-1] * -(logpi * sg(adv) + config.actent * ent)
    metrics = {
        "adv": adv.mean(),
        "adv_mag": jnp.abs(adv).mean(),
        "imag_rew": rew.mean(),
        "imag_con": con.mean(),
        "ret": ret.mean(),
        "val": val.mean(),
        "slowval": slow_val.mean(),
        "weight": weight.mean(),
        "policy_ent": ent.mean(),
        "policy_std": std.mean(),
        "retnorm_scale": scale,
    }
    return policy.mean(1), ret, weight[:, :-1], retnorm, metrics


def replay_returns(
    config: DreamerConfig, last: jax.Array, term: jax.Array, rew: jax.Array, boot: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """The replay critic's targets: lambda-returns [B, T-1] of real rewards rew [B, T],
    bootstrapped from imagined returns boot [B, T], discount 1 - 1/horizon; and their weights
    [B, T-1] (zero where a step is the last of its episode)."""
    disc = 1.0 - 1.0 / config.horizon
    ret = lambda_return(last, term, rew, sg(boot), disc, config.lam)
    return ret, 1.0 - last.astype(f32)[:, :-1]


def critic_losses(
    config: DreamerConfig,
    val_logits: jax.Array,
    ret: jax.Array,
    slow_val: jax.Array,
    bins: jax.Array,
) -> jax.Array:
    """The critic's two-hot losses [...] of logits [..., bins]: to the returns ret [...] and,
    scaled by slowreg, to the slow critic's prediction slow_val [...].

    The agent takes them once over all its critic rows, replay and imagined together
    ([B T + N (H+1), bins]), each sequence's last step with a zero target and weight: slicing
    the logits into the two row sets and off the last step copied them, and the slices'
    gradients were padded back together, about 5 [17408, 255] passes at 1m."""
    return dists.twohot_losses(val_logits, bins, (ret, slow_val), (1.0, config.slowreg))
