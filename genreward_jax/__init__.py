"""GenReward online stage: pure JAX (never imports torch)."""
