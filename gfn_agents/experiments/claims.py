"""Claims: does an agent of one group reach a threshold in fewer trajectories than another group?

A claim (the ``[claims]`` table of a config) names a metric, a threshold and two groups of agents,
e.g. "RL-T or RL-G reach tv ≤ 0.1 in fewer trajectories than TB, DB and SubTB". It is judged from
the runs' curves, never typed by hand, by this rule:

1. For agent a and seed s, T(a, s) is the trajectory count of the first evaluation whose metric
   meets the threshold (≤ for divergences such as tv, ≥ for rewards and mode counts), or ∞ when
   no evaluation within the budget does. Its resolution is the evaluation period.
2. T(a) is the mean of T(a, s) over the seeds (∞ if any seed never reached the threshold); the
   spread is the min and max over the seeds that reached it.
3. B is the smallest T(a) in the ``better`` group, C the smallest in the ``than`` group.
4. **inconclusive at this budget** when B = C = ∞ (no agent of either group reached the threshold
   on every seed) or when an agent of either group has no finished run; **reproduced** when
   B < C; **not reproduced** otherwise (C ≤ B, C finite).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from gfn_agents.experiments.config import Claim

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = (
    "reproduced",
    "not reproduced",
    "inconclusive at this budget",
)

RULE = (
    "T = trajectories at the first evaluation meeting the threshold, mean over seeds (∞ if a "
    "seed never met it within the budget); reproduced if the best of the first group has a "
    "smaller T than every agent of the second, not reproduced if an agent of the second group "
    "has a T at most that, inconclusive if no agent of either group met the threshold on every "
    "seed or an agent has no finished run."
)
"""The rule in one sentence, for reports."""


def first_reached(rows: Sequence[dict[str, Any]], claim: Claim) -> int | None:
    """Trajectories at the first curve row whose metric meets the claim's threshold, or None."""
    for row in rows:
        if claim.reached(row.get(claim.metric)):
            return int(row["trajectories"])
    return None


def spread(values: Sequence[int | None]) -> dict[str, Any]:
    """T(a) of rule 2: ``mean`` (None for ∞), ``min``/``max`` over the seeds that reached it,
    ``reached`` of ``runs``, and the ``per_seed`` values."""
    reached = [v for v in values if v is not None]
    complete = bool(values) and len(reached) == len(values)
    return {
        "mean": sum(reached) / len(reached) if complete else None,
        "min": min(reached) if reached else None,
        "max": max(reached) if reached else None,
        "reached": len(reached),
        "runs": len(values),
        "per_seed": list(values),
    }


def _best(group: Sequence[str], times: dict[str, dict[str, Any]]) -> tuple[str, float]:
    def mean(label: str) -> float:
        value = times[label]["mean"]
        return math.inf if value is None else float(value)

    label = min(group, key=mean)
    return label, mean(label)


def judge(claim: Claim, times: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The verdict of ``claim`` given each agent's :func:`spread` of T (rule of the module).

    Returns ``verdict``, ``reason``, the best agent of each group (``best_better``,
    ``best_than``) with its T, and the claim itself.
    """
    out: dict[str, Any] = {
        "metric": claim.metric,
        "threshold": claim.threshold,
        "direction": "<=" if claim.lower_is_better else ">=",
        "better": list(claim.better),
        "than": list(claim.than),
    }
    missing = [a for a in claim.better + claim.than if not times.get(a, {}).get("runs")]
    if missing:
        return {**out, "verdict": INCONCLUSIVE, "reason": f"no finished runs of {missing}"}
    better, b = _best(claim.better, times)
    than, c = _best(claim.than, times)
    out |= {"best_better": better, "best_than": than}
    if math.isinf(b) and math.isinf(c):
        reason = "no agent of either group met the threshold on every seed within the budget"
        return {**out, "verdict": INCONCLUSIVE, "reason": reason}
    if b < c:
        return {**out, "verdict": REPRODUCED, "reason": f"{better} needs fewer than {than}"}
    return {**out, "verdict": NOT_REPRODUCED, "reason": f"{than} needs no more than {better}"}
