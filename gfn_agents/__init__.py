"""gfn_agents: Stable-Baselines3-style GFlowNet agents evaluated with exact metrics.

``make_agent(name, env, **kwargs)`` builds any preset or baseline by name:

* ``RL-U``: policy gradient, uniform P_B;
* ``RL-B``: policy gradient, P_B trained towards P_F;
* ``RL-G``: policy gradient, P_B trained towards the task's guided distribution;
* ``RL-T``: RL-U with TRPO steps;
* ``TB``, ``DB``, ``SubTB``: the balance losses with a learned P_B (``TB-U``, ``DB-U``,
  ``SubTB-U``: uniform P_B);
* ``SoftDQN``, ``MunchausenDQN``: masked soft and Munchausen DQN (Tiapkin et al. 2024).

The package imports its modules on first use (PEP 562), so ``import gfn_agents`` and
``gfn-train --help`` do not import torch; ``from gfn_agents import make_agent`` works as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gfn_agents.balance import DetailedBalance, SubTrajectoryBalance, TrajectoryBalance
    from gfn_agents.base import GFlowNetAlgorithm
    from gfn_agents.dqn import MunchausenDQN, SoftDQN
    from gfn_agents.evaluation import ExactEvalCallback, evaluate_sampler
    from gfn_agents.pg import PolicyGradientGFN

_HOMES = {
    "GFlowNetAlgorithm": "gfn_agents.base",
    "PolicyGradientGFN": "gfn_agents.pg",
    "TrajectoryBalance": "gfn_agents.balance",
    "DetailedBalance": "gfn_agents.balance",
    "SubTrajectoryBalance": "gfn_agents.balance",
    "SoftDQN": "gfn_agents.dqn",
    "MunchausenDQN": "gfn_agents.dqn",
    "ExactEvalCallback": "gfn_agents.evaluation",
    "evaluate_sampler": "gfn_agents.evaluation",
}
"""Where each public name lives (imported on first access)."""

PRESET_SPECS: dict[str, tuple[str, dict[str, Any]]] = {
    "RL-U": ("PolicyGradientGFN", {"backward": "uniform"}),
    "RL-B": ("PolicyGradientGFN", {"backward": "forward"}),
    "RL-G": ("PolicyGradientGFN", {"backward": "guided"}),
    "RL-T": ("PolicyGradientGFN", {"backward": "uniform", "update": "trpo"}),
    "TB": ("TrajectoryBalance", {"backward": "learned"}),
    "TB-U": ("TrajectoryBalance", {"backward": "uniform"}),
    "DB": ("DetailedBalance", {"backward": "learned"}),
    "DB-U": ("DetailedBalance", {"backward": "uniform"}),
    "SubTB": ("SubTrajectoryBalance", {"backward": "learned"}),
    "SubTB-U": ("SubTrajectoryBalance", {"backward": "uniform"}),
    "SoftDQN": ("SoftDQN", {}),
    "MunchausenDQN": ("MunchausenDQN", {}),
}
"""Agent names: the class name and the kwargs that define each preset (no torch import needed).
``PRESETS`` maps the same names to ``(class, kwargs)``."""


def __getattr__(name: str) -> Any:
    if name == "PRESETS":
        value: Any = {k: (__getattr__(c), dict(kw)) for k, (c, kw) in PRESET_SPECS.items()}
    elif name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
    else:
        raise AttributeError(f"module 'gfn_agents' has no attribute {name!r}")
    globals()[name] = value
    return value


def import_agents() -> None:
    """Import every agent module (so that ``GFlowNetAlgorithm.load`` finds the saved class)."""
    for home in set(_HOMES.values()):
        importlib.import_module(home)


def make_agent(name: str, env: Any, policy: str = "MlpPolicy", **kwargs: Any) -> GFlowNetAlgorithm:
    """Build the agent called ``name`` (see :data:`PRESET_SPECS`) on ``env``; kwargs override.

    ``env`` is a registered id with or without the ``gfn_envs/`` namespace, a Gymnasium env or a
    vector env of gfn_envs; an id that is not a gfn_envs task is a ValueError.
    """
    if name not in PRESET_SPECS:
        raise ValueError(f"unknown agent {name!r}; choose one of {sorted(PRESET_SPECS)}")
    class_name, preset = PRESET_SPECS[name]
    return __getattr__(class_name)(policy, env, **{**preset, **kwargs})


__all__ = [
    "PRESETS",
    "PRESET_SPECS",
    "DetailedBalance",
    "ExactEvalCallback",
    "GFlowNetAlgorithm",
    "MunchausenDQN",
    "PolicyGradientGFN",
    "SoftDQN",
    "SubTrajectoryBalance",
    "TrajectoryBalance",
    "evaluate_sampler",
    "import_agents",
    "make_agent",
]
