"""FB trained inside DreamerV3's jitted train step, and its goal reward for the reward head.

Plugs into ``genreward_jax.dreamer.Agent(extra=...)``. Per training batch [B, T]:
  * transitions (s_t, a_t) -> s_{t+1} for t < T − 1 that stay inside one episode; s is DreamerV3's
    posterior feature (stop-gradient: FB never shapes the world model), B sees the DINOv3 feature
    of obs_{t+1} stored in replay, a' is the replay's next action a_{t+1};
  * the FB loss of ``fb.fb_loss`` with its own Adam at ``lr`` (1e-4), soft target updates (τ);
  * after ``freeze_after_updates`` updates, F and B stop changing (parameters, targets and the
    reward normaliser are held), as the paper freezes them after 100k env steps;
  * reward bonus for step t: ``β · normalise(F(s_t, a_t, z_g)ᵀ z_g)`` with ``z_g = B(goal)``, a
    state-action value of being at s_t (the reward head sees s_t only, so it learns its mean over
    the policy's actions). Normalisation: running mean and std over replay batches
    (``fb.normaliser_update``), so β is in units of the FB reward's spread.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genreward_jax.rewards import fb

GOAL_FEATURE_KEY = 'dino'


@dataclasses.dataclass(frozen=True)
class FBRewardSpec:
    """What FB needs from the agent and the goal."""

    state_dim: int
    action_dim: int
    goal_feature: np.ndarray  # [G] DINOv3 pooled feature of the goal keyframe
    beta: float
    freeze_after_updates: int


class FBExtraLoss:
    """``ExtraLoss`` for ``Agent``: trains FB on each batch and returns the goal-reward bonus."""

    def __init__(self, config: fb.FBConfig, spec: FBRewardSpec):
        if spec.goal_feature.ndim != 1:
            raise ValueError(f'goal feature must be [G], got shape {spec.goal_feature.shape}')
        self.config = config
        self.spec = spec
        self.optimizer = optax.adam(config.lr)

    def init(self, key: jax.Array) -> tuple[dict[str, Any], dict[str, Any]]:
        """(trainable FB params, non-trained state: target nets, normaliser, update count)."""
        goal_dim = int(self.spec.goal_feature.shape[0])
        params = fb.init_fb(key, self.config, self.spec.state_dim, self.spec.action_dim,
                            goal_dim)
        state = {'target': jax.tree.map(jnp.copy, params), 'norm': fb.normaliser_init(),
                 'updates': jnp.zeros((), jnp.int32)}
        return params, state

    def active(self, state: dict[str, Any]) -> jax.Array:
        """True while FB still trains (before the freeze)."""
        return state['updates'] < self.spec.freeze_after_updates

    def transitions(self, inputs: dict[str, Any]) -> dict[str, jax.Array]:
        """[B, T] training slice -> B·(T − 1) transitions in ``fb.fb_loss``'s layout."""
        feat = jax.lax.stop_gradient(inputs['feat']).astype(jnp.float32)
        action = inputs['action'].astype(jnp.float32)
        batch = inputs['batch']
        goal = batch[GOAL_FEATURE_KEY].astype(jnp.float32)
        keep = ~batch['is_first'][:, 1:].astype(bool)
        terminal = batch['is_terminal'][:, 1:].astype(jnp.float32)

        def flat(x):
            return x.reshape((-1, *x.shape[2:]))

        return {'state': flat(feat[:, :-1]), 'action': flat(action[:, :-1]),
                'next_state': flat(feat[:, 1:]), 'next_action': flat(action[:, 1:]),
                'next_goal_feat': flat(goal[:, 1:]),
                'discount': flat(self.config.discount * (1.0 - terminal)),
                'mask': flat(keep.astype(jnp.float32))}

    def loss(self, params: dict[str, Any], state: dict[str, Any], inputs: dict[str, Any],
             key: jax.Array) -> tuple[jax.Array, dict[str, jax.Array], jax.Array]:
        transitions = self.transitions(inputs)
        z = fb.sample_z(key, self.config, transitions['next_goal_feat'], params)
        loss, metrics = fb.fb_loss(params, state['target'], self.config, transitions, z)
        active = self.active(state)
        loss = jnp.where(active, loss, 0.0)

        feat = jax.lax.stop_gradient(inputs['feat']).astype(jnp.float32)
        b, t = feat.shape[:2]
        z_goal = jax.lax.stop_gradient(
            fb.goal_z(params, self.config, jnp.asarray(self.spec.goal_feature, jnp.float32)))
        q = jax.lax.stop_gradient(fb.fb_q(
            params, self.config, feat.reshape(b * t, -1),
            inputs['action'].astype(jnp.float32).reshape(b * t, -1), z_goal))
        bonus = self.spec.beta * fb.normalise(state['norm'], q).reshape(b, t)
        metrics = {**metrics, 'fb_q_mean': q.mean(), 'fb_q_std': q.std(),
                   'fb_active': active.astype(jnp.float32), 'fb_reward': bonus.mean()}
        metrics['fb_q_batch'] = q
        return loss, metrics, bonus

    def post_update(self, old_params: dict[str, Any], params: dict[str, Any],
                    state: dict[str, Any], metrics: dict[str, jax.Array]
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Holds everything once frozen; otherwise soft-updates targets and the normaliser."""
        active = self.active(state)
        params = jax.tree.map(lambda new, old: jnp.where(active, new, old), params, old_params)
        target = fb.soft_update(state['target'], params, self.config.tau)
        target = jax.tree.map(lambda new, old: jnp.where(active, new, old), target,
                              state['target'])
        q = metrics['fb_q_batch']
        norm = fb.normaliser_update(state['norm'], q, jnp.ones_like(q))
        norm = jax.tree.map(lambda new, old: jnp.where(active, new, old), norm, state['norm'])
        return params, {'target': target, 'norm': norm, 'updates': state['updates'] + 1}
