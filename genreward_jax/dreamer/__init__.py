"""DreamerV3 (the current official version) in JAX / Flax NNX.

API summary (what the trainer codes against)
--------------------------------------------
    from genreward_jax.dreamer import Agent, DreamerConfig, preset

    config = preset('1m', compute_dtype='float32')   # or DreamerConfig(...) / preset('tiny')
    agent = Agent(config, obs_spec, act_dim)          # obs_spec: {key: (shape, dtype)} from env
    state = agent.init(jax.random.key(0))             # TrainState (a pytree, checkpointable)
    carry = agent.initial_carry(num_envs)             # dict of [N, ...] arrays (a pytree)
    action, carry = agent.policy(state, carry, obs, key, mode='train')  # 'train' | 'eval'
    state, metrics, context = agent.train(state, batch, key)            # one gradient

Observation keys. The encoder/decoder use the keys of ``obs_spec`` named in
``config.image_keys`` (uint8 [H, W, 3], H = W = 64) and ``config.vector_keys`` (float [D]) that
are present; other keys (reward, is_first, success, extra_image, ...) are ignored.

policy(state, carry, obs, key, mode)
    obs: dict of [N, ...] arrays for the encoder keys plus ``is_first`` bool [N].
    carry: {'deter': f32 [N, deter], 'stoch': f32 [N, stoch, classes], 'prev_action': f32 [N, A]}.
    Returns action f32 [N, A] in [-1, 1] (sampled in 'train', the mean in 'eval') and the new
    carry, whose 'deter'/'stoch' are the posterior state of this step: store them in replay next
    to obs_t as the replay context of step t (keys 'deter', 'stoch').

train(state, batch, key) -> (state, metrics, context)      [donates ``state``: do not reuse it]
    batch: dict of [B, T+1, ...] arrays in the replay layout (index 0 is the context step):
      encoder keys (e.g. 'image' uint8 [B, T+1, 64, 64, 3], 'state' f32 [B, T+1, 39]),
      'action' f32 [B, T+1, A]     action taken FROM obs_t (zeros at the last step),
      'reward' f32 [B, T+1]        reward on arriving at obs_t -- whatever combined reward the
                                   trainer stores (r_env + alpha r_video ...): it is the reward
                                   head's target,
      'is_first', 'is_last', 'is_terminal' bool [B, T+1],
      'deter' f32 [B, T+1, deter], 'stoch' f32 [B, T+1, stoch, classes]: replay context; only
                                   index 0 is read (the RSSM's initial state). Zeros are fine
                                   for steps that never had one (is_first resets the state).
    Training uses steps 1..T: the RSSM starts from (deter, stoch)[:, 0] with prev action
    action[:, 0]. metrics: dict of f32 scalars. context: {'deter': [B, T, deter],
    'stoch': [B, T, stoch, classes]}, the posterior of steps 1..T, to write back into replay.

TrainState (genreward_jax.dreamer.agent.TrainState, a flax.struct dataclass):
    params       nested dict of f32 arrays: enc, dyn, dec, rew, con, pol, val
    slow_value   nested dict, EMA copy of params['val'] (rate 0.02 per update)
    opt_state    optax state of the one LaProp chain over (params, extra_params) packed into
                 one f32 [rows, 128] matrix (optimizer.FlatLayout; agent.layout)
    retnorm      {'lo': f32 [], 'hi': f32 []} percentile EMA of imagined returns
    extra_params nested dict, the ExtraLoss's parameters (e.g. the FB networks); {} if none
    extra_opt_state  state of the ExtraLoss's own optimizer; () if none
    extra_state  nested dict not optimised (e.g. FB target networks); {} if none
    step         int32 [] number of updates done

Notes: 'eval' mode acts with the policy mean (the official agent samples in both modes).
``agent.loss(params, extra_params, state, batch, key) -> (loss, (metrics, context, retnorm))``
is the pure total loss that ``train`` differentiates; ``agent.nets(params)`` binds the NNX
modules to a parameter pytree. On CPU the jitted steps compile with LLVM -O1 without its
expensive passes (``agent.cpu_compiler_options``, whose docstring gives the saving).

Extending the train step: pass ``Agent(..., extra=ExtraLoss)`` (protocol in agent.py:
optimizer, init, loss, post_update). Its loss is added to the one loss whose gradient the step
computes; its parameters are updated by its own optimizer, then ``post_update``; a reward bonus
[B, T] it returns is added to the reward head's (and replay value loss's) target. An
action-aware extra (``action_aware``, ``transition_context``, ``transition_reward``) instead
scores (state, action) transitions where the agent scores actions: in imagination and in the
replay value loss, each at the step the transition arrives at. The world-model and
actor-critic losses are pure functions in world_model.py and actor_critic.py.
"""

from genreward_jax.dreamer.agent import Agent, ExtraLoss, TrainState
from genreward_jax.dreamer.config import DreamerConfig, preset

__all__ = ["Agent", "DreamerConfig", "ExtraLoss", "TrainState", "preset"]
