"""Recurrent state-space model with a block GRU and categorical latents.

State: deter f32-or-compute [N, D] and stoch one-hot [N, S, K]. ``observe`` and ``imagine``
run as ``lax.scan`` over time (``scan_unroll`` steps per loop iteration; unrolling multiplies
compile time). The prior is not needed
inside the observe loop, so it is computed afterwards on all steps at once (one big matmul
instead of T small ones).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from genreward_jax.dreamer import distributions as dists
from genreward_jax.dreamer.hoisted_scan import LinearFn, hoisted_scan, plain_linear
from genreward_jax.dreamer.networks import BlockLinear, Linear, NormAct, RMSNorm, rms_silu

f32 = jnp.float32
sg = jax.lax.stop_gradient

State = dict[str, jax.Array]


@jax.custom_vjp
def gru_gates(x: jax.Array, state: jax.Array) -> jax.Array:
    """The GRU's new state [..., D] from its gate pre-activations x [..., 3, D] (reset,
    candidate, update) and the old state [..., D], float32: with reset = sigmoid(x0),
    cand = tanh(reset * x1), update = sigmoid(x2 - 1), new = update * cand + (1 - update) * state.

    Its gradient is written out so the three gates' gradients are stacked into one
    [..., 3, D] array. Differentiated as composed ops, each gate's slice of x sent back a
    zero-padded [..., 3, D] array and the three were summed: on the 1m preset those pads took
    5.5 ms of the observe scan's backward loop per update, the stack about 1.7 ms."""
    return _gru_gates_fwd(x, state)[0]


def _gru_gates_fwd(x, state):
    reset = jax.nn.sigmoid(x[..., 0, :])
    cand = jnp.tanh(reset * x[..., 1, :])
    update = jax.nn.sigmoid(x[..., 2, :] - 1.0)
    return update * cand + (1 - update) * state, (x, state)


def _gru_gates_bwd(residuals, grad):
    x, state = residuals
    reset = jax.nn.sigmoid(x[..., 0, :])
    cand = jnp.tanh(reset * x[..., 1, :])
    update = jax.nn.sigmoid(x[..., 2, :] - 1.0)
    grad_cand_pre = grad * update * (1.0 - cand * cand)
    grad_reset_pre = grad_cand_pre * x[..., 1, :] * reset * (1.0 - reset)
    grad_update_pre = grad * (cand - state) * update * (1.0 - update)
    grad_x = jnp.stack([grad_reset_pre, grad_cand_pre * reset, grad_update_pre], -2)
    return grad_x, grad * (1.0 - update)


gru_gates.defvjp(_gru_gates_fwd, _gru_gates_bwd)


def initial_state(batch: int, deter: int, stoch: int, classes: int) -> State:
    """The zero state every sequence starts from: deter [N, D], stoch [N, S, K]."""
    return {
        "deter": jnp.zeros((batch, deter), f32),
        "stoch": jnp.zeros((batch, stoch, classes), f32),
    }


class RSSM(nnx.Module):
    def __init__(
        self,
        *,
        deter: int,
        hidden: int,
        stoch: int,
        classes: int,
        blocks: int,
        act_dim: int,
        embed_size: int,
        unimix: float,
        rngs: nnx.Rngs,
        dtype=f32,
        eps: float = 1e-4,
        remat_observe: bool = False,
        scan_unroll: int = 1,
    ):
        self.remat_observe, self.scan_unroll = remat_observe, scan_unroll
        self.eps = eps
        self.deter, self.hidden, self.stoch, self.classes = deter, hidden, stoch, classes
        self.blocks, self.unimix, self.dtype = blocks, unimix, dtype
        kw = dict(rngs=rngs, dtype=dtype, eps=eps)
        self.dynin_deter = NormAct(deter, hidden, **kw)
        self.dynin_stoch = NormAct(stoch * classes, hidden, **kw)
        self.dynin_action = NormAct(act_dim, hidden, **kw)
        # Each block sees its deter slice plus all three projections.
        self.dynhid = BlockLinear(
            deter + blocks * 3 * hidden, deter, blocks, rngs=rngs, dtype=dtype
        )
        self.dynhid_norm = RMSNorm(deter, eps)
        self.dyngru = BlockLinear(deter, 3 * deter, blocks, rngs=rngs, dtype=dtype)
        self.prior0 = NormAct(deter, hidden, **kw)
        self.prior1 = NormAct(hidden, hidden, **kw)
        self.prior_logit = Linear(hidden, stoch * classes, rngs=rngs, dtype=dtype)
        self.post0 = NormAct(deter + embed_size, hidden, **kw)
        self.post_logit = Linear(hidden, stoch * classes, rngs=rngs, dtype=dtype)

    # ------------------------------------------------------------------ pieces

    def initial(self, batch: int) -> State:
        return initial_state(batch, self.deter, self.stoch, self.classes)

    def action_input(self, action: jax.Array) -> jax.Array:
        """The core's action projection [..., H] of action [..., A] (scaled into [-1, 1] by
        its magnitude, without gradient through the scale). Separate from the core so the
        observe scan computes it for all steps at once, outside the loop."""
        action = action / sg(jnp.maximum(1.0, jnp.abs(action)))
        return self.dynin_action(action)

    def to_groups(self, deter: jax.Array) -> jax.Array:
        """deter [N, D] -> group-major [G, N, D/G], the layout the block GRU computes in."""
        n, g = deter.shape[0], self.blocks
        return deter.reshape((n, g, self.deter // g)).transpose((1, 0, 2))

    def core(self, deter: jax.Array, stoch: jax.Array, action: jax.Array) -> jax.Array:
        """Block GRU step: deter [N, D], stoch [N, S, K], action [N, A] -> deter [N, D]."""
        new, _ = self.grouped_core(deter, self.to_groups(deter), stoch, self.action_input(action))
        return new

    def grouped_core(
        self, deter: jax.Array, grouped: jax.Array, stoch: jax.Array, action_in: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """Block GRU step on a state held in both layouts: deter [N, D] and the same values
        group-major, grouped [G, N, D/G]; stoch [N, S, K]; action_in [N, H] from
        ``action_input``. Returns the new deter in both layouts (``_core_math``)."""
        linear = plain_linear(self._step_kernels())
        return self._core_math(linear, self._step_params(), deter, grouped, stoch, action_in)

    def _step_kernels(self) -> dict[str, jax.Array]:
        """The kernels one filtering step multiplies by, in the compute dtype, by the names
        ``_core_math`` and ``_filter_math`` apply them under (``hoisted_scan``). The block
        GRU's input kernel [G, D/G + 3H, D/G] splits into its block-diagonal deter rows
        [G, D/G, D/G] and its rows shared by all blocks, as one [3H, D] matrix."""
        dg = self.deter // self.blocks
        dynhid = self.dynhid.kernel[...].astype(self.dtype)
        shared = dynhid[:, dg:].transpose((1, 0, 2)).reshape((-1, self.deter))
        return {
            "dynin_deter": self.dynin_deter.linear.kernel[...].astype(self.dtype),
            "dynin_stoch": self.dynin_stoch.linear.kernel[...].astype(self.dtype),
            "dynhid_own": dynhid[:, :dg],
            "dynhid_shared": shared,
            "dyngru": self.dyngru.kernel[...].astype(self.dtype),
            "post0": self.post0.linear.kernel[...].astype(self.dtype)[: self.deter],
            "post_logit": self.post_logit.kernel[...].astype(self.dtype),
        }

    def _step_params(self) -> dict[str, jax.Array]:
        """The biases and norm scales of one filtering step (the posterior's first bias is in
        ``embed_input``)."""
        return {
            "dynin_deter_bias": self.dynin_deter.linear.bias[...],
            "dynin_deter_scale": self.dynin_deter.norm.scale[...],
            "dynin_stoch_bias": self.dynin_stoch.linear.bias[...],
            "dynin_stoch_scale": self.dynin_stoch.norm.scale[...],
            "dynhid_bias": self.dynhid.bias[...],
            "dynhid_scale": self.dynhid_norm.scale[...],
            "dyngru_bias": self.dyngru.bias[...],
            "post0_scale": self.post0.norm.scale[...],
            "post_logit_bias": self.post_logit.bias[...],
        }

    def _core_math(
        self,
        linear: LinearFn,
        p: dict[str, jax.Array],
        deter: jax.Array,
        grouped: jax.Array,
        stoch: jax.Array,
        action_in: jax.Array,
    ) -> tuple[jax.Array, jax.Array]:
        """The block GRU step on explicit kernels (``linear``) and params p
        (``_step_params``); see ``grouped_core``.

        Each block sees concat(its deter slice [D/G], x [3H]) through its kernel
        [D/G + 3H, D/G]; the deter rows act block-diagonally, the shared rows as one
        [N, 3H] x [3H, D] matmul whose [N, D] result the next kernel reads group-major (rows of
        D/G stay contiguous; a dot written group-major directly had its result laid out
        [D, N] and read with a stride of N). Everything after the input projections is
        computed group-major, so the norm over (G, D/G) and the gates read and write
        [G, N, D/G] contiguously (XLA's CPU loops run a kernel that writes its result
        transposed far slower). Scans carry both layouts, so the one transpose left is a
        separate copy, not part of the gate kernel."""
        n, g = deter.shape[0], self.blocks
        dg = self.deter // g
        dt = self.dtype

        def norm_act(name, x):
            pre = linear(name, x) + p[f"{name}_bias"].astype(dt)
            return rms_silu(pre, p[f"{name}_scale"], (-1,), self.eps)

        x = jnp.concatenate(
            [
                norm_act("dynin_deter", deter),
                norm_act("dynin_stoch", stoch.reshape((n, -1))),
                action_in,
            ],
            -1,
        )  # [N, 3H]
        own = linear("dynhid_own", grouped)
        shared = linear("dynhid_shared", x).reshape((n, g, dg)).transpose((1, 0, 2))
        x = own + shared + p["dynhid_bias"].astype(dt).reshape((g, 1, dg))
        x = rms_silu(x, p["dynhid_scale"].reshape((g, 1, dg)), (0, 2), self.eps)  # over all D
        x = linear("dyngru", x) + p["dyngru_bias"].astype(dt).reshape((g, 1, -1))
        new = gru_gates(x.astype(f32).reshape((g, n, 3, dg)), grouped.astype(f32))
        return new.transpose((1, 0, 2)).reshape((n, self.deter)), new

    def _logits(self, raw: jax.Array) -> jax.Array:
        """Raw [N, S*K] -> unimixed log-probabilities f32 [N, S, K]."""
        raw = raw.astype(f32).reshape((*raw.shape[:-1], self.stoch, self.classes))
        return dists.unimix_logits(raw, self.unimix)

    def prior(self, deter: jax.Array) -> jax.Array:
        """deter [..., D] -> prior log-probs [..., S, K] (the KL's)."""
        return jnp.log(self.prior_probs(deter))

    def prior_probs(self, deter: jax.Array) -> jax.Array:
        """deter [..., D] -> unimixed prior probabilities [..., S, K]: what a rollout samples
        from, without the logarithm ``prior`` takes."""
        raw = self.prior_logit(self.prior1(self.prior0(deter))).astype(f32)
        raw = raw.reshape((*raw.shape[:-1], self.stoch, self.classes))
        return dists.unimix_probs(raw, self.unimix)

    def prior_sample(self, deter: jax.Array, uniform: jax.Array) -> jax.Array:
        """A one-hot sample [N, S, K] of the prior at deter [N, D] from uniform [N, S] in
        [0, 1): ``onehot_inverse_cdf(uniform, prior_probs(deter))``, computed classes first.

        The logit layer's columns are reordered so its output is [N, K, S]; the softmax, the
        unimix and the cumulative sum then run over the second-last axis, K vector operations
        across S, where over a last axis of K = 4 they ran element by element (the prior
        head of one 1m imagination step: 0.77 -> 0.39 ms, microbenchmarked). Same values."""
        n, s, k = deter.shape[0], self.stoch, self.classes
        x = self.prior1(self.prior0(deter)).astype(self.dtype)
        kernel = self.prior_logit.kernel[...].astype(self.dtype)
        kernel = kernel.reshape((-1, s, k)).transpose((0, 2, 1)).reshape((-1, k * s))
        bias = self.prior_logit.bias[...].astype(self.dtype).reshape((s, k)).T.reshape(-1)
        raw = (x @ kernel + bias).astype(f32).reshape((n, k, s))
        probs = dists.unimix_probs(raw, self.unimix, axis=-2)
        return dists.onehot_inverse_cdf(uniform, probs, axis=-2)

    def posterior(self, deter: jax.Array, embed: jax.Array) -> jax.Array:
        """deter [..., D], embed [..., E] -> posterior log-probs [..., S, K]."""
        return self._posterior_from(deter, self.embed_input(embed))

    def embed_input(self, embed: jax.Array) -> jax.Array:
        """The embedding's part of the posterior's first layer, embed [..., E] -> [..., H]
        (bias included): that layer reads concat(deter, embed), whose product splits into a
        deter part and this one. The observe scan computes it for all steps at once."""
        linear = self.post0.linear
        kernel = linear.kernel[...].astype(self.dtype)[self.deter :]
        return embed.astype(self.dtype) @ kernel + linear.bias[...].astype(self.dtype)

    def _posterior_from(self, deter: jax.Array, embed_in: jax.Array) -> jax.Array:
        linear = plain_linear(self._step_kernels())
        return self._posterior_math(linear, self._step_params(), deter, embed_in)

    def _posterior_math(
        self, linear: LinearFn, p: dict[str, jax.Array], deter: jax.Array, embed_in: jax.Array
    ) -> jax.Array:
        """Posterior log-probs [N, S, K] from deter [N, D] and ``embed_input`` [N, H]."""
        x = rms_silu(linear("post0", deter) + embed_in, p["post0_scale"], (-1,), self.eps)
        return self._logits(linear("post_logit", x) + p["post_logit_bias"].astype(self.dtype))

    def _filter_math(
        self, linear: LinearFn, p: dict[str, jax.Array], state: State, inputs: tuple
    ) -> tuple[State, tuple[State, jax.Array]]:
        """One filtering step on a state with a ``grouped`` copy of deter, in the form
        ``hoisted_scan`` runs: inputs ((action_in [N, H], embed_in [N, H]),
        (keep [N, 1], uniform [N, S])). keep zeroes the state where an episode starts
        (action_in was computed from masked actions). Returns the new state and the step's
        outputs (posterior state, log-probs [N, S, K])."""
        (action_in, embed_in), (keep, uniform) = inputs
        grouped = state["grouped"] * keep[None]
        deter, grouped = self._core_math(
            linear, p, state["deter"] * keep, grouped, state["stoch"] * keep[:, :, None], action_in
        )
        logits = self._posterior_math(linear, p, deter, embed_in)
        stoch = dists.onehot_sample_uniform(uniform, logits)
        return {"deter": deter, "stoch": stoch, "grouped": grouped}, (
            {"deter": deter, "stoch": stoch},
            logits,
        )

    def obs_step(
        self,
        state: State,
        prev_action: jax.Array,
        embed: jax.Array,
        is_first: jax.Array,
        uniform: jax.Array,
    ) -> tuple[State, jax.Array]:
        """One filtering step; resets state and prev action to zero where is_first [N].
        uniform [N, S] in [0, 1) is the sampling noise (``jax.random.uniform``). Returns the new
        posterior state and its log-probs [N, S, K]."""
        keep = (~is_first).astype(f32)[:, None]
        state = {**state, "grouped": self.to_groups(state["deter"])}
        inputs = (self.action_input(prev_action * keep), self.embed_input(embed)), (keep, uniform)
        linear = plain_linear(self._step_kernels())
        _, (state, logits) = self._filter_math(linear, self._step_params(), state, inputs)
        return state, logits

    # ------------------------------------------------------------------ sequences

    def observe(
        self,
        state: State,
        prev_actions: jax.Array,
        embeds: jax.Array,
        is_first: jax.Array,
        key: jax.Array,
    ) -> tuple[State, jax.Array]:
        """Filter a sequence as a scan over time.

        state: initial {deter [B, D], stoch [B, S, K]}; prev_actions [B, T, A];
        embeds [B, T, E]; is_first bool [B, T].
        Returns posterior states {deter [B, T, D], stoch [B, T, S, K]} and log-probs
        [B, T, S, K]. The scan is a ``hoisted_scan``: the step's kernels get their gradients
        after the backward loop, one contraction each over all T steps. With
        ``remat_observe`` it is a plain scan whose step is rematerialised in the backward pass
        instead: saving only the carry keeps the scan's residuals (and the compiled program)
        small, at the price of running every step's forward twice."""
        b, t = is_first.shape
        uniform = jax.random.uniform(key, (t, b, self.stoch), f32)
        keep = (~is_first).astype(f32)[..., None]  # [B, T, 1]
        # Everything that does not depend on the carry runs on all steps at once.
        action_in = self.action_input(prev_actions * keep)  # [B, T, H]
        embed_in = self.embed_input(embeds)  # [B, T, H]

        def swap(x):
            return jnp.swapaxes(x, 0, 1)

        carry = {**state, "grouped": self.to_groups(state["deter"])}
        xs = (swap(action_in), swap(embed_in))
        consts = (swap(keep), uniform)
        kernels, params = self._step_kernels(), self._step_params()
        if self.remat_observe:
            step = jax.checkpoint(
                lambda c, x: self._filter_math(plain_linear(kernels), params, c, x)
            )
            _, (states, logits) = jax.lax.scan(step, carry, (xs, consts), unroll=self.scan_unroll)
        else:
            _, (states, logits) = hoisted_scan(
                self._filter_math, kernels, params, carry, xs, consts, self.scan_unroll
            )
        return jax.tree.map(swap, states), swap(logits)

    def imagine(
        self,
        state: State,
        policy: Callable[[State, jax.Array], tuple[jax.Array, Any]],
        horizon: int,
        key: jax.Array,
        act_dim: int,
    ) -> tuple[State, jax.Array, Any]:
        """Roll the prior forward with actions from policy(state, noise [N, A]) ->
        (action [N, A], aux), where noise is standard normal and aux any pytree of [N, ...]
        arrays the policy computed on the state (e.g. other heads' first layers, which read
        the same features). Not differentiable (use stop-gradient inputs).

        Returns time-major states {deter [H+1, N, D], stoch [H+1, N, S, K]} including the
        start state at index 0, actions [H+1, N, A] where action t is taken from state t,
        and aux stacked the same way [H+1, N, ...]. Time-major as the scan makes them: the
        imagined rows' consumers either do not care about the row order or swap only the
        narrow arrays they need."""
        n = state["deter"].shape[0]
        lat_key, act_key = jax.random.split(key)
        uniform = jax.random.uniform(lat_key, (horizon, n, self.stoch), f32)
        act_noise = jax.random.normal(act_key, (horizon + 1, n, act_dim), f32)

        # The kernels' layouts are made once, outside the loop.
        linear, params = plain_linear(self._step_kernels()), self._step_params()

        def rows(state, noise):
            action, aux = policy(state, noise)
            return state, action, aux

        def step(carry, inputs):
            t, lat_noise, a_noise = inputs
            model, stacked = carry
            action_in = self.action_input(model["action"])
            deter, grouped = self._core_math(
                linear, params, model["deter"], model["grouped"], model["stoch"], action_in
            )
            stoch = self.prior_sample(deter, lat_noise)
            row = rows({"deter": deter, "stoch": stoch}, a_noise)
            stacked = jax.tree.map(lambda xs, x: xs.at[t + 1].set(x), stacked, row)
            model = {"deter": deter, "stoch": stoch, "grouped": grouped, "action": row[1]}
            return (model, stacked), None

        # The [H+1, ...] outputs are carried and written row by row in place, the start
        # state's row before the loop and each step's new state's row inside it. Stacking the
        # scan's rows and concatenating one more copied every array ([H+1, N, D] deter
        # included) once more, and so did writing the last row after the loop (XLA copied the
        # loop's buffer before updating it).
        start = {"deter": state["deter"], "stoch": state["stoch"]}
        first = rows(start, act_noise[0])
        stacked = jax.tree.map(
            lambda x: jnp.zeros((horizon + 1, *x.shape), x.dtype).at[0].set(x), first
        )
        model = {**start, "grouped": self.to_groups(state["deter"]), "action": first[1]}
        (_, stacked), _ = jax.lax.scan(
            step,
            (model, stacked),
            (jnp.arange(horizon), uniform, act_noise[1:]),
            unroll=self.scan_unroll,
        )
        return stacked


def features(state: State) -> jax.Array:
    """concat(deter, flat stoch) [..., D + S*K], the input of every head."""
    stoch = state["stoch"]
    return jnp.concatenate(
        [state["deter"].astype(f32), stoch.reshape((*stoch.shape[:-2], -1)).astype(f32)], -1
    )
