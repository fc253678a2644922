"""Shared tiny DreamerV3 agents and batches (compiled once per session)."""

import dataclasses

import jax
import numpy as np
import pytest

from genreward_jax.dreamer import Agent, preset
from genreward_jax.envs import ACT_DIM
from tests.batches import replay_batch

VECTOR_SPEC = {"state": ((39,), np.float32), "reward": ((), np.float32), "is_first": ((), bool)}
IMAGE_SPEC = {"image": ((64, 64, 3), np.uint8), "state": ((39,), np.float32)}


def make_batch(config, spec, batch=3, length=6, seed=0):
    """Random replay batch [B, T+1, ...] with the spec's state / image, one episode start."""
    shapes = {"state": (39,), "image": (64, 64, 3)}
    features = {k: v for k, v in shapes.items() if k in spec}
    return replay_batch(config, batch, length, seed, features=features)


@pytest.fixture(scope="session")
def tiny_config():
    return preset("tiny")


@pytest.fixture(scope="session")
def vector_agent(tiny_config):
    # A larger learning rate than the official 4e-5 so that three updates visibly fit a batch.
    return Agent(dataclasses.replace(tiny_config, lr=3e-3), VECTOR_SPEC, ACT_DIM)


@pytest.fixture(scope="session")
def vector_batch(tiny_config):
    return make_batch(tiny_config, VECTOR_SPEC)


@pytest.fixture(scope="session")
def trained(vector_agent, vector_batch):
    """Initial params and the results of 3 train steps on one fixed batch and key."""
    state0 = vector_agent.init(jax.random.key(0))
    params0 = jax.tree.map(np.asarray, state0.params)
    state = state0
    history = []
    for _ in range(3):
        state, metrics, context = vector_agent.train(state, vector_batch, jax.random.key(7))
        history.append(jax.tree.map(np.asarray, metrics))
    return params0, state, history, context
