"""Shared fixtures: one tiny DreamerV3 agent per session, so its jitted steps compile once."""

import numpy as np
import pytest

from genreward_jax.dreamer import Agent, preset


@pytest.fixture(scope="session")
def tiny_agent_factory():
    """Agent factory for Trainer that reuses one Agent (and its compiled functions) per spec."""
    agents = {}
    config = preset("tiny")

    def factory(obs_spec, act_dim):
        key = (
            tuple(sorted((k, tuple(s), np.dtype(d).str) for k, (s, d) in obs_spec.items())),
            act_dim,
        )
        if key not in agents:
            agents[key] = Agent(config, obs_spec, act_dim)
        return agents[key]

    return factory
