"""gfn_agents: Stable-Baselines3-style GFlowNet agents evaluated with exact metrics.

``make_agent(name, env, **kwargs)`` builds any preset or baseline by name:

* ``RL-U``: policy gradient, uniform P_B;
* ``RL-B``: policy gradient, P_B trained towards P_F;
* ``RL-G``: policy gradient, P_B trained towards the task's guided distribution;
* ``RL-T``: RL-U with TRPO steps;
* ``TB``, ``DB``, ``SubTB``: the balance losses with a learned P_B (``TB-U``, ``DB-U``,
  ``SubTB-U``: uniform P_B);
* ``SoftDQN``, ``MunchausenDQN``: masked soft and Munchausen DQN (Tiapkin et al. 2024).
"""

from __future__ import annotations

from typing import Any

from gfn_agents.balance import DetailedBalance, SubTrajectoryBalance, TrajectoryBalance
from gfn_agents.base import GFlowNetAlgorithm
from gfn_agents.dqn import MunchausenDQN, SoftDQN
from gfn_agents.evaluation import ExactEvalCallback, evaluate_sampler
from gfn_agents.pg import PolicyGradientGFN

PRESETS: dict[str, tuple[type[GFlowNetAlgorithm], dict[str, Any]]] = {
    "RL-U": (PolicyGradientGFN, {"backward": "uniform"}),
    "RL-B": (PolicyGradientGFN, {"backward": "forward"}),
    "RL-G": (PolicyGradientGFN, {"backward": "guided"}),
    "RL-T": (PolicyGradientGFN, {"backward": "uniform", "update": "trpo"}),
    "TB": (TrajectoryBalance, {"backward": "learned"}),
    "TB-U": (TrajectoryBalance, {"backward": "uniform"}),
    "DB": (DetailedBalance, {"backward": "learned"}),
    "DB-U": (DetailedBalance, {"backward": "uniform"}),
    "SubTB": (SubTrajectoryBalance, {"backward": "learned"}),
    "SubTB-U": (SubTrajectoryBalance, {"backward": "uniform"}),
    "SoftDQN": (SoftDQN, {}),
    "MunchausenDQN": (MunchausenDQN, {}),
}
"""Agent names: the class and the kwargs that define each preset."""


def make_agent(name: str, env: Any, policy: str = "MlpPolicy", **kwargs: Any) -> GFlowNetAlgorithm:
    """Build the agent called ``name`` (see :data:`PRESETS`) on ``env``; kwargs override."""
    if name not in PRESETS:
        raise ValueError(f"unknown agent {name!r}; choose one of {sorted(PRESETS)}")
    cls, preset = PRESETS[name]
    return cls(policy, env, **{**preset, **kwargs})


__all__ = [
    "PRESETS",
    "DetailedBalance",
    "ExactEvalCallback",
    "GFlowNetAlgorithm",
    "MunchausenDQN",
    "PolicyGradientGFN",
    "SoftDQN",
    "SubTrajectoryBalance",
    "TrajectoryBalance",
    "evaluate_sampler",
    "make_agent",
]
