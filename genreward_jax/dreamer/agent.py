"""DreamerV3 agent: parameters, one jitted train step, one jitted batched policy step.

The networks are Flax NNX modules; the hot paths are pure functions of a parameter pytree:
``nnx.merge(graphdef, params)`` rebuilds the modules inside ``jax.jit`` (trace-time only).
See the package docstring for the API and the batch layout.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from genreward_jax.dreamer import actor_critic as ac
from genreward_jax.dreamer import distributions as dists
from genreward_jax.dreamer import world_model as wm
from genreward_jax.dreamer.config import DreamerConfig
from genreward_jax.dreamer.networks import Actor, Decoder, Encoder, Head
from genreward_jax.dreamer.optimizer import flatten, make_flat_optimizer, make_layout, unflatten
from genreward_jax.dreamer.rssm import RSSM, features, initial_state

f32 = jnp.float32
sg = jax.lax.stop_gradient
Params = dict[str, Any]
# Replay keys that are never encoder inputs even if they look like vectors.
_NOT_OBSERVATIONS = ("reward", "dense_reward", "is_first", "is_last", "is_terminal", "success")


@flax.struct.dataclass
class TrainState:
    """Everything the train step updates (a pytree; checkpoint it whole)."""

    params: Params
    slow_value: Params
    opt_state: Any
    retnorm: dict[str, jax.Array]
    extra_params: Params
    extra_opt_state: Any
    extra_state: Params
    step: jax.Array


class ExtraLoss(Protocol):
    """An additional loss trained in the same gradient step (e.g. forward-backward).

    ``init(key) -> (params, state)``: params are differentiated together with the agent's (one
    gradient) and updated by the extra's own ``optimizer`` (an optax transformation, e.g. Adam
    at FB's learning rate); state is carried untouched by the optimizer.
    ``loss`` receives ``inputs`` = {'feat': posterior features [B, T, F] (with gradient into
    the world model; stop it yourself if unwanted), 'embed': [B, T, E], 'action': [B, T, A],
    'batch': the training slice (steps 1..T) of the batch}. It returns (scalar loss, metrics,
    reward bonus [B, T] or None); the bonus is added (stop-gradient) to batch['reward'] as the
    target of the reward head and of the replay value loss. Scalar metrics are reported as
    'extra/<name>'; all of them (arrays too) go to ``post_update(old_params, params, state,
    metrics) -> (params, state)``, which runs after the optimizer step (e.g. soft target
    updates, freezing).

    Action-aware extras (``action_aware = True``) also score transitions where the agent
    scores actions: ``transition_context(batch) -> [B, T, ...]`` says what each replay step
    needs besides (feat, action) (imagined rollouts keep their start's), and
    ``transition_reward(params, state, feat [..., F], action [..., A], context [...]) ->
    (reward [...], aux)`` is the reward of taking action at feat. The agent adds it to the
    arrival step (``actor_critic.shift_to_arrival``) of imagined rollouts and of the replay
    value loss's rewards; not to the reward head's target.

    ``state_input`` (optional, default 'latent') says what the extra's ``feat`` is: the world
    model's features, or 'decoded', the decoder's prediction of the vector observations from
    them (symlog space, stop-gradient): a function of the latent whose meaning stays fixed while
    the latent representation itself drifts during training."""

    optimizer: optax.GradientTransformation

    def init(self, key: jax.Array) -> tuple[Params, Params]: ...

    def loss(
        self,
        params: Params,
        state: Params,
        inputs: dict[str, Any],
        key: jax.Array,
    ) -> tuple[jax.Array, dict[str, jax.Array], jax.Array | None]: ...

    def post_update(
        self, old_params: Params, params: Params, state: Params, metrics: dict[str, jax.Array]
    ) -> tuple[Params, Params]: ...


def cpu_compiler_options() -> dict[str, Any] | None:
    """XLA options for the jitted steps on CPU: LLVM -O1 without its expensive passes. The
    CPU compiler spends most of its time in LLVM, one kernel per fusion; this cuts train-step
    compile time by ~40% at unchanged step time (matmuls run in library kernels, not in
    LLVM-generated code). Other backends keep their defaults."""
    if jax.default_backend() != "cpu":
        return None
    return {"xla_backend_optimization_level": 1, "xla_llvm_disable_expensive_passes": True}


class DreamerNets(nnx.Module):
    """All trainable networks: enc, dyn, dec, rew, con, pol, val."""

    def __init__(
        self,
        config: DreamerConfig,
        vector_dims: dict[str, int],
        image_shapes: dict[str, tuple[int, ...]],
        act_dim: int,
        rngs: nnx.Rngs,
    ):
        c = config
        dtype = jnp.dtype(c.compute_dtype)
        eps = c.norm_eps
        self.enc = Encoder(
            vector_dims,
            image_shapes,
            units=c.units,
            layers=c.enc_layers,
            depth=c.depth,
            mults=c.cnn_mults,
            kernel=c.kernel,
            rngs=rngs,
            dtype=dtype,
            eps=eps,
        )
        self.dyn = RSSM(
            deter=c.deter,
            hidden=c.hidden,
            stoch=c.stoch,
            classes=c.classes,
            blocks=c.blocks,
            act_dim=act_dim,
            embed_size=self.enc.out_size,
            unimix=c.unimix,
            rngs=rngs,
            dtype=dtype,
            remat_observe=c.remat_observe,
            scan_unroll=c.scan_unroll,
            eps=eps,
        )
        self.dec = Decoder(
            vector_dims,
            image_shapes,
            deter=c.deter,
            stoch_flat=c.stoch * c.classes,
            units=c.units,
            layers=c.dec_layers,
            depth=c.depth,
            mults=c.cnn_mults,
            kernel=c.kernel,
            blocks=c.dec_blocks,
            rngs=rngs,
            dtype=dtype,
            eps=eps,
        )
        feat = c.feat_size
        self.rew = Head(
            feat, c.head_layers, c.units, c.bins, rngs=rngs, dtype=dtype, outscale=0.0, eps=eps
        )
        self.con = Head(feat, c.head_layers, c.units, 1, rngs=rngs, dtype=dtype, eps=eps)
        self.pol = Actor(
            feat,
            c.ac_layers,
            c.units,
            act_dim,
            rngs=rngs,
            dtype=dtype,
            outscale=c.policy_outscale,
            eps=eps,
        )
        self.val = Head(
            feat, c.ac_layers, c.units, c.bins, rngs=rngs, dtype=dtype, outscale=0.0, eps=eps
        )


def _split_obs_spec(config: DreamerConfig, obs_spec: dict[str, tuple]):
    vector_dims, image_shapes = {}, {}
    for key in config.vector_keys:
        if key in obs_spec and key not in _NOT_OBSERVATIONS:
            shape, _ = obs_spec[key]
            if len(shape) != 1:
                raise ValueError(f"vector key {key!r} must have shape [D], got {shape}")
            vector_dims[key] = int(shape[0])
    for key in config.image_keys:
        if key in obs_spec:
            shape, dtype = obs_spec[key]
            if len(shape) != 3 or np.dtype(dtype) != np.uint8:
                raise ValueError(f"image key {key!r} must be uint8 [H, W, C], got {shape} {dtype}")
            image_shapes[key] = tuple(int(s) for s in shape)
    if not vector_dims and not image_shapes:
        raise ValueError(
            f"none of the image keys {config.image_keys} or vector keys "
            f"{config.vector_keys} is in obs_spec {sorted(obs_spec)}"
        )
    return vector_dims, image_shapes


class Agent:
    """DreamerV3 agent. ``policy`` and ``train`` are jitted; see the package docstring."""

    def __init__(
        self,
        config: DreamerConfig,
        obs_spec: dict[str, tuple],
        act_dim: int,
        extra: ExtraLoss | None = None,
    ):
        self.config = config
        self.act_dim = int(act_dim)
        self.extra = extra
        self.vector_dims, self.image_shapes = _split_obs_spec(config, obs_spec)
        self.obs_keys = tuple(sorted({**self.vector_dims, **self.image_shapes}))
        self.bins = dists.symexp_bins(config.bins)
        abstract = nnx.eval_shape(lambda: self._build(jax.random.key(0)))
        self.graphdef, abstract_params = nnx.split(abstract)
        # The optimizer runs on all agent tensors packed into one matrix (see
        # optimizer.FlatLayout); its state is a few [rows, 128] arrays.
        self.layout = make_layout(nnx.to_pure_dict(abstract_params))
        self.optimizer = make_flat_optimizer(config, self.layout)
        self.value_graphdef, _ = nnx.split(abstract.val)
        options = cpu_compiler_options()
        # Init runs once: compile it as cheaply as possible (LLVM -O0 on CPU).
        init_options = (
            {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else None
        )
        self._init = jax.jit(self._init_state, compiler_options=init_options)
        self.policy = jax.jit(self._policy, static_argnames=("mode",), compiler_options=options)
        self.train = jax.jit(self._train, donate_argnums=(0,), compiler_options=options)
        self.action_aware = extra is not None and getattr(extra, "action_aware", False)
        self.extra_input = getattr(extra, "state_input", "latent") if extra else "latent"
        if self.extra_input not in ("latent", "decoded"):
            raise ValueError(
                f"an extra's state_input must be 'latent' or 'decoded', got {self.extra_input!r}"
            )
        if self.extra_input == "decoded" and not self.vector_dims:
            raise ValueError(
                "state_input 'decoded' needs vector observations (e.g. 'state') "
                "for the decoder to predict"
            )
        self.step_transition_reward = (
            jax.jit(self._step_transition_reward, compiler_options=options)
            if self.action_aware
            else None
        )

    def _build(self, key: jax.Array) -> DreamerNets:
        return DreamerNets(
            self.config, self.vector_dims, self.image_shapes, self.act_dim, nnx.Rngs(params=key)
        )

    # ------------------------------------------------------------------ state

    def init(self, key: jax.Array) -> TrainState:
        """Fresh parameters, optimizer state, slow critic (= critic) and normaliser."""
        return self._init(key)

    def _init_state(self, key: jax.Array) -> TrainState:
        """``init``'s program, jitted whole: the extra's initialiser too (run op by op, FB's
        compiled each op on its own, ~4 s)."""
        key, extra_key = jax.random.split(key)
        extra_params, extra_state = self.extra.init(extra_key) if self.extra else ({}, {})
        params = nnx.to_pure_dict(nnx.split(self._build(key))[1])
        return TrainState(
            params=params,
            slow_value=jax.tree.map(jnp.copy, params["val"]),
            opt_state=self.optimizer.init(flatten(self.layout, params)),
            retnorm=ac.retnorm_init(),
            extra_params=extra_params,
            extra_opt_state=self.extra.optimizer.init(extra_params) if self.extra else (),
            extra_state=extra_state,
            step=jnp.zeros((), jnp.int32),
        )

    def initial_carry(self, num_envs: int) -> dict[str, jax.Array]:
        """Zero RSSM state and previous action for ``num_envs`` environments."""
        c = self.config
        return {
            **initial_state(num_envs, c.deter, c.stoch, c.classes),
            "prev_action": jnp.zeros((num_envs, self.act_dim), f32),
        }

    def nets(self, params: Params) -> DreamerNets:
        """Modules bound to a parameter pytree (for tests and tools; jit the caller)."""
        return nnx.merge(self.graphdef, params)

    # ------------------------------------------------------------------ policy

    def _policy(
        self,
        state: TrainState,
        carry: dict[str, jax.Array],
        obs: dict[str, jax.Array],
        key: jax.Array,
        mode: str = "train",
    ):
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        nets = self.nets(state.params)
        lat_key, act_key = jax.random.split(key)
        embed = nets.enc({k: obs[k] for k in self.obs_keys})
        rssm_state = {"deter": carry["deter"], "stoch": carry["stoch"]}
        uniform = jax.random.uniform(lat_key, rssm_state["stoch"].shape[:-1], f32)
        rssm_state, _ = nets.dyn.obs_step(
            rssm_state, carry["prev_action"], embed, obs["is_first"].astype(bool), uniform
        )
        mean, std = dists.bounded_normal(
            *nets.pol(features(rssm_state)), self.config.policy_minstd, self.config.policy_maxstd
        )
        if mode == "eval":
            action = mean
        else:
            action = jnp.clip(mean + std * jax.random.normal(act_key, mean.shape, f32), -1, 1)
        new_carry = {
            "deter": rssm_state["deter"],
            "stoch": sg(rssm_state["stoch"]),
            "prev_action": action,
        }
        return action, new_carry

    # ------------------------------------------------------------------ training

    def loss(
        self,
        params: Params,
        extra_params: Params,
        state: TrainState,
        batch: dict[str, jax.Array],
        key: jax.Array,
    ):
        """Total loss of one batch (pure; differentiate w.r.t. params and extra_params).

        Returns (loss, (metrics, context, retnorm, extra_metrics))."""
        c = self.config
        bins = jnp.asarray(self.bins)
        obs_key, extra_key, imag_key = jax.random.split(key, 3)
        nets = self.nets(params)
        frozen = self.nets(sg(params))
        slow_value = nnx.merge(self.value_graphdef, state.slow_value)

        data = {k: v[:, 1:] for k, v in batch.items() if k not in ("deter", "stoch")}
        start = {
            k: batch[k][:, 0] if batch[k].ndim == (3 if k == "deter" else 4) else batch[k]
            for k in ("deter", "stoch")
        }
        prev_actions = batch["action"][:, :-1].astype(f32)
        is_first = data["is_first"].astype(bool)
        obs = {k: data[k] for k in self.obs_keys}
        observed = wm.observe(nets, obs, prev_actions, is_first, start, obs_key)

        reward = data["reward"].astype(f32)
        losses, metrics = {}, {}
        total = jnp.zeros((), f32)
        extra_metrics = {}
        if self.extra is not None:
            inputs = {
                "feat": self.extra_features(frozen, observed.feat),
                "embed": observed.embed,
                "action": data["action"].astype(f32),
                "batch": data,
            }
            extra_loss, extra_metrics, bonus = self.extra.loss(
                extra_params, state.extra_state, inputs, extra_key
            )
            total = total + extra_loss
            metrics.update({f"extra/{k}": v for k, v in extra_metrics.items() if jnp.ndim(v) == 0})
            metrics["loss/extra"] = extra_loss
            if bonus is not None:
                reward = reward + sg(bonus.astype(f32))
                metrics["reward_bonus"] = bonus.mean()

        metrics["reward_target"] = reward.mean()
        b, t = is_first.shape
        starts = jax.tree.map(lambda x: sg(x.reshape((b * t, *x.shape[2:]))), observed.states)
        # The heads' first layers on the imagined rows run inside the imagination scan; the
        # trained heads (critic, actor) get their kernel gradients from first_known, on the
        # time-major states as the scan stacked them (only the narrow arrays are swapped).
        img_states, img_act, img_pres = ac.imagine(
            frozen,
            c,
            starts,
            imag_key,
            [frozen.val.mlp, slow_value.mlp, frozen.rew.mlp, frozen.con.mlp],
        )
        h1, n = img_act.shape[:2]
        img_rows = (img_states["deter"], img_states["stoch"].reshape((h1, n, -1)))
        pol_pre, val_img_pre, slow_img_pre, rew_pre, con_pre = img_pres
        pol_pre = nets.pol.mlp.first_known(img_rows, pol_pre)
        val_img_pre = nets.val.mlp.first_known(img_rows, val_img_pre)
        pol_pre, val_img_pre, slow_img_pre, rew_pre, con_pre, img_act = (
            jnp.swapaxes(x, 0, 1)
            for x in (pol_pre, val_img_pre, slow_img_pre, rew_pre, con_pre, img_act)
        )
        img_feat = jnp.swapaxes(features(img_states), 0, 1)  # [N, H+1, F] for action-aware extras
        replay_extra, img_extra = self.transition_rewards(
            extra_params, state.extra_state, observed.feat, data, img_feat, img_act, frozen
        )
        if self.action_aware:
            metrics["extra_reward/replay"] = replay_extra.mean()
            metrics["extra_reward/imag"] = img_extra.mean()

        # The critic's replay rows run their first layer here: the only rows whose input
        # gradient (into the world model) is needed. The rest of each head runs once on all
        # its rows.
        replay_feat = observed.feat.reshape((b * t, -1))

        def split(x):
            return (
                x[: b * t].reshape((b, t, *x.shape[1:])),
                x[b * t :].reshape((n, h1, *x.shape[1:])),
            )

        def rows(replay_pre, img_pre):
            return jnp.concatenate([replay_pre, img_pre.reshape((n * h1, -1))], 0)

        val_logits = nets.val.rest(rows(nets.val.mlp.first(replay_feat), val_img_pre))
        _, val_img = split(dists.twohot_mean(val_logits, bins))
        slow_pre = rows(slow_value.mlp.first(sg(replay_feat)), slow_img_pre)
        slow_val = dists.twohot_mean(slow_value.rest(slow_pre), bins)  # [B T + N (H+1)]
        _, slow_img = split(slow_val)
        img_rew = dists.twohot_mean(frozen.rew.rest(rew_pre), bins) + img_extra
        img_con = jax.nn.sigmoid(frozen.con.rest(con_pre)[..., 0])
        policy_out = nets.pol.rest(pol_pre)

        wm_losses, wm_metrics = wm.world_model_losses(
            nets, c, observed, obs, reward, data["is_terminal"], bins
        )
        losses.update(wm_losses)
        metrics.update(wm_metrics)

        losses["policy"], img_ret, img_weight, retnorm, img_metrics = ac.imagination_losses(
            c, policy_out, img_act, img_rew, img_con, val_img, slow_img, state.retnorm
        )
        metrics.update({f"imag/{k}": v for k, v in img_metrics.items()})
        boot = img_ret[:, 0].reshape((b, t))
        rep_ret, rep_weight = ac.replay_returns(
            c, data["is_last"], data["is_terminal"], reward + replay_extra, boot
        )

        # One cross-entropy over all critic rows (``critic_losses``); each sequence's last
        # step has no return and no weight.
        def targets(ret):
            return jnp.pad(ret, ((0, 0), (0, 1))).reshape(-1)

        critic = ac.critic_losses(
            c, val_logits, jnp.concatenate([targets(rep_ret), targets(img_ret)]), slow_val, bins
        )
        critic_rep, critic_img = split(critic)
        losses["value"] = (img_weight * critic_img[:, :-1]).mean(1)
        losses["repval"] = rep_weight * critic_rep[:, :-1]

        for name, value in losses.items():
            mean = value.mean()
            metrics[f"loss/{name}"] = mean
            total = total + wm.loss_scale(c, name) * mean
        context = {"deter": sg(observed.states["deter"]), "stoch": sg(observed.states["stoch"])}
        return total, (metrics, context, retnorm, extra_metrics)

    def extra_features(self, frozen_nets, feat: jax.Array) -> jax.Array:
        """What the extra reads as a state [..., F'] from world-model features [..., F]: the
        features themselves, or (state_input 'decoded') the decoder's prediction of the vector
        observations, concatenated in key order, without gradient."""
        if self.extra_input == "latent":
            return feat
        c = self.config
        lead = feat.shape[:-1]
        flat = sg(feat).reshape((-1, feat.shape[-1]))
        recons = frozen_nets.dec(
            flat[:, : c.deter], flat[:, c.deter :].reshape((-1, c.stoch, c.classes))
        )
        decoded = jnp.concatenate([recons[k] for k in sorted(self.vector_dims)], -1)
        return sg(decoded).reshape((*lead, -1))

    def transition_rewards(
        self,
        extra_params: Params,
        extra_state: Params,
        feat: jax.Array,
        data: dict[str, jax.Array],
        img_feat: jax.Array,
        img_act: jax.Array,
        frozen_nets=None,
    ) -> tuple[jax.Array, jax.Array]:
        """An action-aware extra's rewards at their arrival steps: on replay [B, T] (for the
        replay value loss; zero where a new episode starts) and on imagined rollouts [N, H+1]
        (each start row keeps its replay step's context). Zeros without such an extra."""
        if not self.action_aware:
            return jnp.zeros((), f32), jnp.zeros((), f32)
        b, t = data["is_first"].shape
        n, h1 = img_feat.shape[:2]
        if self.extra_input != "latent":
            if frozen_nets is None:
                raise ValueError("state_input 'decoded' needs the agent's networks")
            feat = self.extra_features(frozen_nets, feat)
            img_feat = self.extra_features(frozen_nets, img_feat)
        context = self.extra.transition_context(data)
        replay_tr, _ = self.extra.transition_reward(
            extra_params, extra_state, sg(feat), data["action"].astype(f32), context
        )
        replay = ac.shift_to_arrival(replay_tr.astype(f32), ~data["is_first"].astype(bool))
        img_context = jnp.broadcast_to(
            context.reshape((b * t, 1, *context.shape[2:])), (n, h1, *context.shape[2:])
        )
        img_tr, _ = self.extra.transition_reward(
            extra_params, extra_state, img_feat, img_act, img_context
        )
        return replay, ac.shift_to_arrival(img_tr.astype(f32))

    def _step_transition_reward(
        self, state: TrainState, carry: dict[str, jax.Array], action: jax.Array, context: jax.Array
    ) -> jax.Array:
        """The action-aware extra's reward [N] of taking ``action`` [N, A] in the posterior
        state of ``carry`` (as ``policy`` returns it): what the agent's objective gives this
        env step, for logging alongside the env's rewards."""
        feat = self.extra_features(
            self.nets(state.params), features({"deter": carry["deter"], "stoch": carry["stoch"]})
        )
        reward, _ = self.extra.transition_reward(
            state.extra_params, state.extra_state, feat, action, context
        )
        return reward

    def _train(self, state: TrainState, batch: dict[str, jax.Array], key: jax.Array):
        grad_fn = jax.value_and_grad(
            lambda trainable: self.loss(*trainable, state, batch, key), has_aux=True
        )
        trainable = (state.params, state.extra_params)
        (total, (metrics, context, retnorm, extra_metrics)), (grads, extra_grads) = grad_fn(
            trainable
        )
        flat = flatten(self.layout, state.params)
        flat_grads = flatten(self.layout, grads)
        updates, opt_state = self.optimizer.update(flat_grads, state.opt_state, flat)
        params = unflatten(self.layout, flat + updates)
        extra_params, extra_opt_state, extra_state = (
            state.extra_params,
            state.extra_opt_state,
            state.extra_state,
        )
        if self.extra is not None:
            extra_updates, extra_opt_state = self.extra.optimizer.update(
                extra_grads, state.extra_opt_state, state.extra_params
            )
            extra_params = optax.apply_updates(state.extra_params, extra_updates)
            extra_params, extra_state = self.extra.post_update(
                state.extra_params, extra_params, state.extra_state, extra_metrics
            )
        rate = self.config.slow_rate
        slow_value = jax.tree.map(
            lambda s, p: (1 - rate) * s + rate * p, state.slow_value, params["val"]
        )
        metrics = dict(metrics)
        metrics["loss/total"] = total
        count = sum(math.prod(shape) for shape in self.layout.shapes)
        metrics["grad_norm"] = jnp.sqrt(jnp.square(flat_grads).sum())
        metrics["update_rms"] = jnp.sqrt(jnp.square(updates).sum() / count)
        new_state = TrainState(
            params=params,
            slow_value=slow_value,
            opt_state=opt_state,
            retnorm=retnorm,
            extra_params=extra_params,
            extra_opt_state=extra_opt_state,
            extra_state=extra_state,
            step=state.step + 1,
        )
        return new_state, metrics, context
