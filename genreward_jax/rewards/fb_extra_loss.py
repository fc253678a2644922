"""FB trained inside DreamerV3's jitted train step, and its goal reward where actions are scored.

Plugs into ``genreward_jax.dreamer.Agent(extra=...)``. Per training batch [B, T]:
  * transitions (s_t, a_t) -> s_{t+1} for t < T − 1 that stay inside one episode; s is DreamerV3's
    posterior feature (stop-gradient: FB never shapes the world model), B sees the DINOv3 feature
    of obs_{t+1} stored in replay, a' is the replay's next action a_{t+1};
  * the FB loss of ``fb.fb_loss`` with its own Adam at ``lr`` (1e-4), soft target updates (τ);
  * after ``freeze_after_updates`` updates, F and B stop changing (parameters, targets and the
    Q normaliser are held), as the paper freezes them after 100k env steps.

The reward (Eq. 9), ``r_fb(s_t, a_t) = F(s_t, a_t, z_g)ᵀ z_g`` with ``z_g = B(goal)``, is a value of
taking a_t at s_t. Where it enters (``FBRewardSpec.target``):
  * ``'actor'`` (default): as the reward of the transition it belongs to — taking a_t at s_t is
    rewarded on arriving at step t+1 — in imagination (F on the imagined state and action) and,
    with the same alignment, in the replay value loss. The reward head learns the env and video
    terms only, so the actor sees which *action* the goal prefers.
  * ``'reward_head'`` (the paper's Eq. 10 read literally): added to the reward head's target at
    step t; the head sees s_t only, so it learns the mean over the policy's actions.

Scale (``FBRewardSpec.scaling``):
  * ``'calibrated'`` (default): ``β · σ_env · (Q − μ_Q) / σ_Q``, with μ_Q, σ_Q running statistics of
    Q over replay batches and σ_env the per-step std of the env reward over all batches so far
    (1 with the env reward off): β is the FB term's per-step spread as a fraction of the env
    reward's (logged as ``fb_step_spread_vs_env``).
  * ``'paper'``: ``β · Q`` on the raw value, the release's formula (its β = 1e-5 then makes the
    term vanish: Q scales with 1/((1 − γ)·ρ(goal))).

Goal space: B reads DINOv3 features of replay frames (``'dino'``, the paper) or, as a labelled
control that bypasses the image encoder (``'state'``), the 39-d proprioceptive state, with the
goal state taken at the keyframe of a scripted goal.

Goal banks: with G goals (one per object/goal placement) ``goal_features`` is [G, D] and each
replay step carries the index of its episode's goal (``GOAL_INDEX_KEY``); imagined rollouts keep
the goal of the state they start from.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genreward_jax.rewards import fb
from genreward_jax.rewards.scaling import SCALINGS

GOAL_SPACES = ("dino", "state")  # each is also the replay key B reads
GOAL_INDEX_KEY = "placement"
TARGETS = ("actor", "reward_head")
STATE_INPUTS = ("latent", "decoded")
f32 = jnp.float32
sg = jax.lax.stop_gradient


@dataclasses.dataclass(frozen=True)
class FBRewardSpec:
    """What FB needs from the agent and the goal, and how its reward enters learning."""

    state_dim: int
    action_dim: int
    goal_feature: np.ndarray  # [G] (one goal) or [N_goals, G]: DINOv3 of each goal keyframe
    beta: float
    freeze_after_updates: int
    target: str = "actor"
    scaling: str = "calibrated"
    env_reward: bool = True  # False: generated rewards only, σ_env is taken as 1
    goal_space: str = "dino"  # 'state': the oracle control, B on the 39-d state
    # F's state: the world model's latent features ('latent', state_dim = feat_size) or the
    # decoder's prediction of the vector observation from them ('decoded', state_dim = its
    # size): the latent representation drifts as the world model trains, which moves a
    # frozen F's Q; the decoded observation means the same thing throughout.
    state_input: str = "latent"

    def __post_init__(self):
        if np.ndim(self.goal_feature) not in (1, 2):
            raise ValueError(
                f"goal feature must be [G] or [N_goals, G], got shape {np.shape(self.goal_feature)}"
            )
        if self.target not in TARGETS:
            raise ValueError(f"FB reward target must be one of {TARGETS}, got {self.target!r}")
        if self.scaling not in SCALINGS:
            raise ValueError(f"reward scaling must be one of {SCALINGS}, got {self.scaling!r}")
        if self.state_input not in STATE_INPUTS:
            raise ValueError(
                f"FB state input must be one of {STATE_INPUTS}, got {self.state_input!r}"
            )
        if self.goal_space not in GOAL_SPACES:
            raise ValueError(f"goal space must be one of {GOAL_SPACES}, got {self.goal_space!r}")

    @property
    def goal_features(self) -> np.ndarray:
        """[N_goals, G]."""
        return np.atleast_2d(np.asarray(self.goal_feature, np.float32))


def goal_closeness_corr(
    q: jax.Array, next_inputs: jax.Array, goal_inputs: jax.Array, mask: jax.Array
) -> jax.Array:
    """Pearson correlation over real transitions [N] between Q(s_t, a_t) and the closeness of
    s_{t+1} to the goal in B's input space, −‖φ(s_{t+1}) − φ(g)‖ (inputs [N, G], per-row goals).

    A direct check that the FB reward points at the goal, logged every update
    (``fb_q_goal_corr``): near 0, Q carries no goal signal the actor could follow, whatever its
    scale; FB's training loss alone cannot tell (it falls while Q still ignores the goal)."""
    closeness = -jnp.linalg.norm(next_inputs - goal_inputs, axis=-1)
    w = mask / jnp.maximum(mask.sum(), 1.0)
    dq = q - (w * q).sum()
    dc = closeness - (w * closeness).sum()
    cov = (w * dq * dc).sum()
    return cov * jax.lax.rsqrt((w * dq * dq).sum() * (w * dc * dc).sum() + 1e-12)


def reward_shares(
    env: jax.Array, stored: jax.Array, fb_bonus: jax.Array, env_on: bool
) -> dict[str, jax.Array]:
    """Each term's share of the reward variance, over the batch's sequences [B, T].

    The terms: env (r_env as applied), video (the stored reward minus the env term: α·r_video),
    FB (the scaled Eq. 9 bonus). Each sequence's sum of a term is one sample; share_k =
    var_B(sum_k) / Σ_j var_B(sum_j) (covariances left out), and spread_k = std_B(sum_k) /
    std_B(sum_env), the number the calibrated weights aim at (α, β)."""
    sums = {"env": env.sum(1), "video": (stored - env).sum(1), "fb": fb_bonus.sum(1)}
    var = {k: v.var() for k, v in sums.items()}
    total = jnp.maximum(sum(var.values()), 1e-12)
    out = {f"share_{k}": v / total for k, v in var.items()}
    if env_on:
        env_std = jnp.maximum(jnp.sqrt(var["env"]), 1e-12)
        out.update({f"spread_{k}_vs_env": jnp.sqrt(var[k]) / env_std for k in ("video", "fb")})
    return out


class FBExtraLoss:
    """``ExtraLoss`` for ``Agent``: trains FB on each batch and scores transitions with Eq. 9."""

    def __init__(self, config: fb.FBConfig, spec: FBRewardSpec):
        self.config = config
        self.spec = spec
        self.optimizer = optax.adam(config.lr)
        self.action_aware = spec.target == "actor"
        self.state_input = spec.state_input

    def init(self, key: jax.Array) -> tuple[dict[str, Any], dict[str, Any]]:
        """(trainable FB params, non-trained state: target nets, normalisers, update count)."""
        goal_dim = int(self.spec.goal_features.shape[1])
        params = fb.init_fb(key, self.config, self.spec.state_dim, self.spec.action_dim, goal_dim)
        state = {
            "target": jax.tree.map(jnp.copy, params),
            "norm": fb.normaliser_init(),
            "env_norm": fb.normaliser_init(),
            "goal_norm": fb.normaliser_init((goal_dim,)),
            "updates": jnp.zeros((), jnp.int32),
        }
        return params, state

    def active(self, state: dict[str, Any]) -> jax.Array:
        """True while FB still trains (before the freeze)."""
        return state["updates"] < self.spec.freeze_after_updates

    def goal_inputs(self, state: dict[str, Any], features: jax.Array) -> jax.Array:
        """B's input: goal-space features [..., G], standardised per dimension with the running
        replay statistics (``FBConfig.standardise_goal_inputs``)."""
        features = features.astype(f32)
        if not self.config.standardise_goal_inputs:
            return features
        return fb.normalise(sg(state["goal_norm"]), features)

    def transitions(
        self, inputs: dict[str, Any], state: dict[str, Any] | None = None
    ) -> dict[str, jax.Array]:
        """[B, T] training slice -> B·(T − 1) transitions in ``fb.fb_loss``'s layout."""
        feat = sg(inputs["feat"]).astype(f32)
        action = inputs["action"].astype(f32)
        batch = inputs["batch"]
        goal = batch[self.spec.goal_space].astype(f32)
        keep = ~batch["is_first"][:, 1:].astype(bool)
        terminal = batch["is_terminal"][:, 1:].astype(f32)

        def flat(x):
            return x.reshape((-1, *x.shape[2:]))

        return {
            "state": flat(feat[:, :-1]),
            "action": flat(action[:, :-1]),
            "next_state": flat(feat[:, 1:]),
            "next_action": flat(action[:, 1:]),
            "next_goal_feat": flat(
                goal[:, 1:] if state is None else self.goal_inputs(state, goal[:, 1:])
            ),
            "raw_next_goal_feat": flat(goal[:, 1:]),
            "discount": flat(self.config.discount * (1.0 - terminal)),
            "mask": flat(keep.astype(f32)),
        }

    def transition_context(self, batch: dict[str, jax.Array]) -> jax.Array:
        """What ``transition_reward`` needs per replay step besides feat and action: the index
        of the step's goal [B, T] (all 0 with one goal). Imagination keeps its start's."""
        return self.goal_index(batch)

    def goal_index(self, batch: dict[str, jax.Array]) -> jax.Array:
        """Index of each replay step's goal [B, T] (all 0 with one goal)."""
        if GOAL_INDEX_KEY in batch and self.spec.goal_features.shape[0] > 1:
            return batch[GOAL_INDEX_KEY].astype(jnp.int32)
        return jnp.zeros(batch["is_first"].shape, jnp.int32)

    def env_scale(self, state: dict[str, Any]) -> jax.Array:
        """σ_env: per-step std of the env reward over all batches so far; 1 with the env reward
        off or while it has not varied (as the video term's, goal_rewards.GoalRewards)."""
        if not self.spec.env_reward:
            return jnp.ones((), f32)
        norm = state["env_norm"]
        return jnp.where((norm["count"] > 0) & (norm["var"] > 0), jnp.sqrt(norm["var"]), 1.0)

    def transition_reward(
        self,
        params: dict[str, Any],
        state: dict[str, Any],
        feat: jax.Array,
        action: jax.Array,
        goal_index: jax.Array,
    ) -> tuple[jax.Array, jax.Array]:
        """Scaled Eq. 9 reward of taking action [..., A] at feat [..., F] towards the goal of
        goal_index [...], and the raw Q it scales, both [...] (stop-gradient: the reward never
        trains F or the agent)."""
        params, state = sg(params), sg(state)
        lead = feat.shape[:-1]
        feat = feat.reshape((-1, feat.shape[-1])).astype(f32)
        action = action.reshape((-1, action.shape[-1])).astype(f32)
        goals = fb.backward_embedding(
            params, self.config, self.goal_inputs(state, jnp.asarray(self.spec.goal_features))
        )
        q = fb.fb_reward(params, self.config, feat, action, goals[goal_index.reshape(-1)])
        if self.spec.scaling == "paper":
            reward = self.spec.beta * q
        else:
            reward = self.spec.beta * self.env_scale(state) * fb.normalise(state["norm"], q)
        return reward.reshape(lead), q.reshape(lead)

    def loss(
        self, params: dict[str, Any], state: dict[str, Any], inputs: dict[str, Any], key: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array], jax.Array | None]:
        transitions = self.transitions(inputs, state)
        z = fb.sample_z(key, self.config, transitions["next_goal_feat"], params)
        loss, metrics = fb.fb_loss(params, state["target"], self.config, transitions, z)
        active = self.active(state)
        loss = jnp.where(active, loss, 0.0)

        batch = inputs["batch"]
        bonus, q = self.transition_reward(
            params, state, inputs["feat"], inputs["action"], self.goal_index(batch)
        )
        goal_inputs = self.goal_inputs(state, jnp.asarray(self.spec.goal_features))
        transition_goal = goal_inputs[self.goal_index(batch)[:, :-1].reshape(-1)]
        metrics["fb_q_goal_corr"] = goal_closeness_corr(
            q[:, :-1].reshape(-1),
            transitions["next_goal_feat"],
            transition_goal,
            transitions["mask"],
        )
        env = batch["r_env"] if "r_env" in batch else batch["reward"]
        env_term = env.astype(f32) * float(self.spec.env_reward)
        metrics.update(reward_shares(env_term, batch["reward"], bonus, self.spec.env_reward))
        env_scale = self.env_scale(state)
        metrics = {
            **metrics,
            "fb_q_mean": q.mean(),
            "fb_q_std": q.std(),
            "fb_active": active.astype(f32),
            "fb_reward": bonus.mean(),
            "fb_reward_std": bonus.std(),
            "env_scale": env_scale,
            "fb_q_batch": q.reshape(-1),
            "env_reward_batch": env.reshape(-1),
            "fb_step_spread_vs_env": bonus.std() / env_scale,
            "goal_feat_batch": transitions["raw_next_goal_feat"],
            "goal_feat_mask": transitions["mask"],
        }
        return loss, metrics, (None if self.action_aware else bonus)

    def post_update(
        self,
        old_params: dict[str, Any],
        params: dict[str, Any],
        state: dict[str, Any],
        metrics: dict[str, jax.Array],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Holds everything once frozen; otherwise soft-updates targets and the normaliser."""
        active = self.active(state)
        params = jax.tree.map(lambda new, old: jnp.where(active, new, old), params, old_params)
        target = fb.soft_update(state["target"], params, self.config.tau)
        target = jax.tree.map(lambda new, old: jnp.where(active, new, old), target, state["target"])
        q = metrics["fb_q_batch"]
        norm = fb.normaliser_update(state["norm"], q, jnp.ones_like(q))
        norm = jax.tree.map(lambda new, old: jnp.where(active, new, old), norm, state["norm"])
        env = metrics["env_reward_batch"].astype(f32)
        env_norm = fb.normaliser_update(state["env_norm"], env, jnp.ones_like(env), rate=0.0)
        goal_norm = fb.normaliser_update(
            state["goal_norm"], metrics["goal_feat_batch"], metrics["goal_feat_mask"]
        )
        goal_norm = jax.tree.map(
            lambda new, old: jnp.where(active, new, old), goal_norm, state["goal_norm"]
        )
        return params, {
            "target": target,
            "norm": norm,
            "env_norm": env_norm,
            "goal_norm": goal_norm,
            "updates": state["updates"] + 1,
        }
