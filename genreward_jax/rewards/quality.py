"""Reward quality: does a generated reward term rank behaviour the way the task does?

A term is scored on rollouts of policies of graded competence in the goal's scene: the scripted
expert, the expert with Gaussian action noise of several sizes, and uniform random actions. For
each term and level we report the per-episode total (mean ± std), and over all episodes the
Spearman correlation of the total with the true env return and with success, and the AUC of
"expert episode scores above random episode" (0.5: no signal, 1: perfect separation).

A term is anything with ``name`` and ``episode_rewards(rollouts) -> [per-step rewards [L]]``
(``RewardTerm``), optionally ``fit(rollouts)`` first (FB learns its representation from a
replay of the same rollouts). Later reward baselines plug in the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

import numpy as np

EXPERT, RANDOM = "expert", "random"


@dataclasses.dataclass
class Rollout:
    """One episode: L actions, L + 1 observations (index 0 is the reset)."""

    level: str  # 'expert', 'expert+0.3', ..., 'random'
    frames: np.ndarray  # [L+1, S, S, 3] uint8 policy frames at the goal's resolution
    states: np.ndarray  # [L+1, 39] float32
    actions: np.ndarray  # [L, 4] float32, action t taken at observation t
    rewards: np.ndarray  # [L] float32 dense env reward on arriving at observation t+1
    success: bool  # the task was solved at some step

    @property
    def env_return(self) -> float:
        return float(self.rewards.sum())


class RewardTerm(Protocol):
    name: str

    def episode_rewards(self, rollouts: Sequence[Rollout]) -> list[np.ndarray]: ...


def level_names(noise_levels: Sequence[float]) -> list[str]:
    """Levels from most to least competent."""
    return [EXPERT, *(f"{EXPERT}+{s:g}" for s in noise_levels), RANDOM]


def collect_rollouts(
    task: str,
    placement: np.ndarray | None,
    noise_levels: Sequence[float],
    episodes: int,
    time_limit: int,
    size: int,
    camera: str = "corner",
    seed: int = 0,
    progress: bool = True,
) -> list[Rollout]:
    """``episodes`` episodes per competence level, all starting at ``placement`` (the goal's;
    None: the env's seeded random placements)."""
    from genreward_jax.envs import EnvConfig, MetaWorldEnv, expert_policy

    placements = () if placement is None else (tuple(np.asarray(placement).tolist()),)
    env = MetaWorldEnv(
        EnvConfig(
            task=task,
            seed=seed,
            camera=camera,
            size=size,
            time_limit=time_limit,
            placements=placements,
        )
    )
    expert = expert_policy(task)
    rollouts = []
    try:
        for li, level in enumerate(level_names(noise_levels)):
            for episode in range(episodes):
                rng = np.random.default_rng([seed, li, episode])
                sigma = 0.0 if level in (EXPERT, RANDOM) else float(level.split("+")[1])
                rollouts.append(_rollout(env, expert, level, sigma, rng))
            if progress:
                returns = [r.env_return for r in rollouts if r.level == level]
                print(f"  rollouts {level:12s} return {np.mean(returns):8.1f}", flush=True)
    finally:
        env.close()
    return rollouts


def _rollout(env, expert, level: str, sigma: float, rng: np.random.Generator) -> Rollout:
    obs = env.reset()
    frames, states, actions, rewards, success = [obs["image"]], [obs["state"]], [], [], False
    while not bool(obs["is_last"]):
        if level == RANDOM:
            action = rng.uniform(-1, 1, 4)
        else:
            action = expert.get_action(obs["state"]) + sigma * rng.normal(size=4)
        action = np.clip(action, -1, 1).astype(np.float32)
        obs = env.step(action)
        frames.append(obs["image"])
        states.append(obs["state"])
        actions.append(action)
        rewards.append(obs["dense_reward"])
        success = success or bool(obs["success"])
    return Rollout(
        level,
        np.stack(frames),
        np.stack(states).astype(np.float32),
        np.stack(actions),
        np.asarray(rewards, np.float32),
        success,
    )


# ------------------------------------------------------------------------------------ metrics


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank."""
    x = np.asarray(x, np.float64)
    order = np.argsort(x, kind="stable")
    ranked = np.empty(len(x))
    ranked[order] = np.arange(1, len(x) + 1)
    for value in np.unique(x):
        tied = x == value
        ranked[tied] = ranked[tied].mean()
    return ranked


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (NaN when either side is constant)."""
    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counting half (Mann-Whitney U)."""
    p = np.asarray(positive, np.float64)[:, None]
    n = np.asarray(negative, np.float64)[None, :]
    return float(((p > n) + 0.5 * (p == n)).mean())


def summarise(
    name: str, totals: np.ndarray, rollouts: Sequence[Rollout], levels: Sequence[str]
) -> dict:
    """Per-level mean/std of the per-episode totals [E], and the term's rank statistics."""
    labels = np.array([r.level for r in rollouts])
    per_level = {
        lvl: {
            "mean": float(totals[labels == lvl].mean()),
            "std": float(totals[labels == lvl].std()),
        }
        for lvl in levels
    }
    returns = np.array([r.env_return for r in rollouts])
    success = np.array([float(r.success) for r in rollouts])
    return {
        "term": name,
        "levels": per_level,
        "spearman_return": spearman(totals, returns),
        "spearman_success": spearman(totals, success),
        "auc_expert_vs_random": auc(totals[labels == EXPERT], totals[labels == RANDOM]),
    }


def evaluate_terms(
    terms: Sequence[RewardTerm], rollouts: Sequence[Rollout], levels: Sequence[str]
) -> list[dict]:
    """Fits (where a term learns) and scores every term; the env return is the first row."""
    returns = np.array([r.env_return for r in rollouts])
    rows = [summarise("env return (reference)", returns, rollouts, levels)]
    for term in terms:
        fit = getattr(term, "fit", None)
        if fit is not None:
            fit(rollouts)
        totals = np.array([float(np.sum(r)) for r in term.episode_rewards(rollouts)])
        rows.append(summarise(term.name, totals, rollouts, levels))
    return rows


def format_table(rows: Sequence[dict], levels: Sequence[str]) -> str:
    """Markdown table: one row per term, per-level mean ± std, then the rank statistics."""
    head = ["term", *levels, "ρ(return)", "ρ(success)", "AUC exp/rand"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["term"]]
        cells += [
            f"{row['levels'][lvl]['mean']:.4g} ± {row['levels'][lvl]['std']:.2g}" for lvl in levels
        ]
        cells += [
            f"{row['spearman_return']:.2f}",
            f"{row['spearman_success']:.2f}",
            f"{row['auc_expert_vs_random']:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: Sequence[dict], levels: Sequence[str], path: str, title: str) -> str:
    """Left: each term's per-level mean, standardised over levels so terms of any scale share
    one axis (the env return is the black reference). Right: AUC per term."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    x = np.arange(len(levels))
    colours = plt.get_cmap("tab20").colors  # distinct for up to 20 terms (tab10 repeats)
    for i, row in enumerate(rows):
        means = np.array([row["levels"][lvl]["mean"] for lvl in levels])
        spread = means.std() or 1.0
        ref = row["term"].startswith("env return")
        left.plot(
            x,
            (means - means.mean()) / spread,
            marker="os^D"[i % 4],
            color="black" if ref else colours[i % len(colours)],
            linewidth=3 if ref else 1.5,
            label=row["term"],
        )
    left.set_xticks(x, levels, rotation=20)
    left.set_xlabel("policy (most to least competent)")
    left.set_ylabel("per-episode total, standardised over levels")
    left.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    left.grid(alpha=0.3)
    names = [row["term"] for row in rows]
    aucs = [row["auc_expert_vs_random"] for row in rows]
    right.barh(np.arange(len(names)), aucs, color=["black"] + ["tab:blue"] * (len(names) - 1))
    for i, value in enumerate(aucs):
        right.text(min(value, 0.9) + 0.02, i, f"{value:.2f}", va="center", fontsize=7)
    right.axvline(0.5, color="grey", linestyle="--", linewidth=1)
    right.set_yticks(np.arange(len(names)), names, fontsize=7)
    right.set_xlim(0, 1)
    right.set_xlabel("AUC: expert episode scores above random (0.5 = chance)")
    right.invert_yaxis()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
