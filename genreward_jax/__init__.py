"""GenReward online stage: pure JAX (never imports torch).

House conventions: a JAX module that needs them aliases ``f32 = jnp.float32`` and
``sg = jax.lax.stop_gradient`` right after its imports (the official DreamerV3's spelling, which
our agent follows line by line); arrays whose layout is not obvious carry their shape in the
docstring (``[B, T, H, W, C]``).
"""
