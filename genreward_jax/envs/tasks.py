"""Meta-World v3 task names: the paper's five, name resolution, and the scripted experts."""

from __future__ import annotations

from metaworld.env_dict import ALL_V3_ENVIRONMENTS
from metaworld.policies import ENV_POLICY_MAP
from metaworld.policies.policy import Policy
from metaworld.sawyer_xyz_env import SawyerXYZEnv

PAPER_TASKS: tuple[str, ...] = (
    "pick-place-v3",
    "pick-out-of-hole-v3",
    "bin-picking-v3",
    "shelf-place-v3",
    "disassemble-v3",
)


def all_tasks() -> tuple[str, ...]:
    """Every Meta-World v3 task name, sorted."""
    return tuple(sorted(ALL_V3_ENVIRONMENTS))


def resolve_task(name: str) -> str:
    """Canonical Meta-World name: 'pick-place', 'pick_place', 'Pick-Place-v3' -> 'pick-place-v3'.

    Raises ValueError listing every valid name, so a typo in a flagfile is fixed in one try.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"Task name must be a non-empty string, got {name!r}.")
    canonical = name.strip().lower().replace("_", "-").replace(" ", "-")
    if not canonical.endswith("-v3"):
        canonical += "-v3"
    if canonical not in ALL_V3_ENVIRONMENTS:
        raise ValueError(
            f"Unknown Meta-World task {name!r}. Valid names (the '-v3' suffix is optional): "
            + ", ".join(all_tasks())
        )
    return canonical


def env_class(name: str) -> type[SawyerXYZEnv]:
    """The Meta-World environment class for a task name."""
    return ALL_V3_ENVIRONMENTS[resolve_task(name)]


def expert_policy(name: str) -> Policy:
    """Meta-World's scripted expert; `get_action(state)` takes the 39-d state (goal observable)."""
    task = resolve_task(name)
    if task not in ENV_POLICY_MAP:
        raise ValueError(f"Meta-World has no scripted expert for {task!r}.")
    return ENV_POLICY_MAP[task]()
