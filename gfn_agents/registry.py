"""The agents by name: where each agent class lives and how each preset is defined.

This module imports no agent (and no torch), so the command line can list the presets at once and
:meth:`GFlowNetAlgorithm.load <gfn_agents.base.GFlowNetAlgorithm.load>` can find the class a
checkpoint names among the known agents only. A new agent class is added to :data:`AGENT_CLASSES`,
a new preset to :data:`PRESET_SPECS`.
"""

from __future__ import annotations

import importlib
from typing import Any

AGENT_CLASSES: dict[str, str] = {
    "PolicyGradientGFN": "gfn_agents.pg",
    "TrajectoryBalance": "gfn_agents.balance",
    "DetailedBalance": "gfn_agents.balance",
    "SubTrajectoryBalance": "gfn_agents.balance",
    "SoftDQN": "gfn_agents.dqn",
    "MunchausenDQN": "gfn_agents.dqn",
}
"""Concrete agent classes: class name → the module that defines it."""

PRESET_SPECS: dict[str, tuple[str, dict[str, Any]]] = {
    "RL-U": ("PolicyGradientGFN", {"backward": "uniform"}),
    "RL-B": ("PolicyGradientGFN", {"backward": "forward"}),
    "RL-G": ("PolicyGradientGFN", {"backward": "guided"}),
    "RL-T": ("PolicyGradientGFN", {"backward": "uniform", "update": "trpo"}),
    "RL-PPO": ("PolicyGradientGFN", {"backward": "uniform", "update": "ppo"}),
    "RL-TLM": ("PolicyGradientGFN", {"backward": "tlm"}),
    "SubEB-U": ("PolicyGradientGFN", {"backward": "uniform", "critic": "subeb"}),
    "SubEB-B": ("PolicyGradientGFN", {"backward": "subeb", "critic": "subeb"}),
    "TB": ("TrajectoryBalance", {"backward": "learned"}),
    "TB-U": ("TrajectoryBalance", {"backward": "uniform"}),
    "TB-TLM": ("TrajectoryBalance", {"backward": "tlm"}),
    "DB": ("DetailedBalance", {"backward": "learned"}),
    "DB-U": ("DetailedBalance", {"backward": "uniform"}),
    "SubTB": ("SubTrajectoryBalance", {"backward": "learned"}),
    "SubTB-U": ("SubTrajectoryBalance", {"backward": "uniform"}),
    "SoftDQN": ("SoftDQN", {}),
    "MunchausenDQN": ("MunchausenDQN", {}),
}
"""Agent names: the class name and the kwargs that define each preset."""


def agent_class(name: str) -> type[Any]:
    """The agent class called ``name`` (a key of :data:`AGENT_CLASSES`), imported on demand."""
    if name not in AGENT_CLASSES:
        raise ValueError(f"unknown agent class {name!r}; known: {sorted(AGENT_CLASSES)}")
    return getattr(importlib.import_module(AGENT_CLASSES[name]), name)


def make_agent(name: str, env: Any, policy: str = "MlpPolicy", **kwargs: Any) -> Any:
    """Build the agent called ``name`` (see :data:`PRESET_SPECS`) on ``env``; kwargs override.

    ``env`` is a registered id with or without the ``gfn_envs/`` namespace, a Gymnasium env or a
    vector env of gfn_envs; an id that is not a gfn_envs task is a ValueError.
    """
    if name not in PRESET_SPECS:
        raise ValueError(f"unknown agent {name!r}; choose one of {sorted(PRESET_SPECS)}")
    class_name, preset = PRESET_SPECS[name]
    return agent_class(class_name)(policy, env, **{**preset, **kwargs})
