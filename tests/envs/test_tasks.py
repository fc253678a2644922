"""Task names and Meta-World's scripted experts."""

import numpy as np
import pytest
from metaworld.policies.policy import Policy

from genreward_jax.envs import (
    PAPER_TASKS,
    EnvConfig,
    MetaWorldEnv,
    all_tasks,
    expert_policy,
    resolve_task,
)

EXPERT_SEEDS = (0, 1, 2)


@pytest.mark.parametrize("name", ["pick-place", "pick-place-v3", "Pick_Place", " pick-place-v3 "])
def test_resolve_task_accepts_common_spellings(name):
    assert resolve_task(name) == "pick-place-v3"


def test_paper_tasks_and_all_tasks():
    assert len(PAPER_TASKS) == 5 and set(PAPER_TASKS) <= set(all_tasks())
    assert len(all_tasks()) == 50
    assert [resolve_task(t.removesuffix("-v3")) for t in PAPER_TASKS] == list(PAPER_TASKS)


@pytest.mark.parametrize("name", ["pick-plac", "pick-place-v2", ""])
def test_unknown_task_lists_valid_names(name):
    with pytest.raises(ValueError) as error:
        resolve_task(name)
    for valid in PAPER_TASKS:
        assert valid in str(error.value) or name == ""
    with pytest.raises(ValueError):
        expert_policy(name)


@pytest.mark.parametrize("task", PAPER_TASKS)
def test_scripted_expert_succeeds_for_most_seeds(task):
    """Meta-World's expert through our env (goal observable, time limit 256, no rendering)."""
    policy = expert_policy(task)
    assert isinstance(policy, Policy)
    successes = 0
    for seed in EXPERT_SEEDS:
        env = MetaWorldEnv(EnvConfig(task, seed=seed, render=False))
        try:
            obs = env.reset()
            succeeded = False
            while not obs["is_last"] and not succeeded:
                obs = env.step(np.clip(policy.get_action(obs["state"]), -1, 1))
                succeeded = bool(obs["success"])
            successes += succeeded
        finally:
            env.close()
    assert successes >= 2, f"{task}: expert succeeded for {successes}/{len(EXPERT_SEEDS)} seeds"
