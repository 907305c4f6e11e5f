"""gfn_agents: Stable-Baselines3-style GFlowNet agents evaluated with exact metrics.

``make_agent(name, env, **kwargs)`` builds any preset or baseline by name:

* ``RL-U``: policy gradient, uniform P_B;
* ``RL-B``: policy gradient, P_B trained towards P_F;
* ``RL-G``: policy gradient, P_B trained towards the task's guided distribution;
* ``RL-T``: RL-U with TRPO steps;
* ``RL-PPO``: RL-U with clipped-PPO epochs;
* ``SubEB-U``, ``SubEB-B``: policy gradient with the Sub-EB evaluation function (Niu et al.
  2026), P_B uniform or trained through the Sub-EB loss;
* ``RL-TLM``, ``TB-TLM``: policy gradient or TB with P_B trained by trajectory likelihood
  maximisation (Gritsaev et al. 2025);
* ``TB``, ``DB``, ``SubTB``: the balance losses with a learned P_B (``TB-U``, ``DB-U``,
  ``SubTB-U``: uniform P_B);
* ``SoftDQN``, ``MunchausenDQN``: masked soft and Munchausen DQN (Tiapkin et al. 2024).

The names and presets are listed in :mod:`gfn_agents.registry`. The package imports its modules on
first use (PEP 562), so ``import gfn_agents`` and ``gfn-train --help`` do not import torch;
``from gfn_agents import make_agent`` works as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gfn_agents.registry import AGENT_CLASSES, PRESET_SPECS, agent_class, make_agent

if TYPE_CHECKING:
    from gfn_agents.balance import DetailedBalance, SubTrajectoryBalance, TrajectoryBalance
    from gfn_agents.base import GFlowNetAlgorithm
    from gfn_agents.dqn import MunchausenDQN, SoftDQN
    from gfn_agents.evaluation import ExactEvalCallback, evaluate_sampler
    from gfn_agents.pg import PolicyGradientGFN

_HOMES = {
    **AGENT_CLASSES,
    "GFlowNetAlgorithm": "gfn_agents.base",
    "ExactEvalCallback": "gfn_agents.evaluation",
    "evaluate_sampler": "gfn_agents.evaluation",
}
"""Where each public name lives (imported on first access)."""


def __getattr__(name: str) -> Any:
    if name == "PRESETS":
        value: Any = {k: (agent_class(c), dict(kw)) for k, (c, kw) in PRESET_SPECS.items()}
    elif name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
    else:
        raise AttributeError(f"module 'gfn_agents' has no attribute {name!r}")
    globals()[name] = value
    return value


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
    "make_agent",
]
