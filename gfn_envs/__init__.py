"""gfn_envs: GFlowNet construction tasks as registered Gymnasium environments.

Every id in :data:`ENVIRONMENTS` is registered as ``gfn_envs/<name>`` with both a single-object
entry point (:class:`~gfn_envs.env.GFlowNetEnv`, for ``gymnasium.make``) and a native vector entry
point (:class:`~gfn_envs.env.GFlowNetVectorEnv`, for ``gymnasium.make_vec``).
"""

from __future__ import annotations

from typing import Any

from gymnasium.envs.registration import register, registry

from gfn_envs import metrics
from gfn_envs.checker import GFlowNetContractError, check_gfn_env, check_task
from gfn_envs.env import GFlowNetEnv, GFlowNetVectorEnv, make_task
from gfn_envs.exact import exact_distribution, target_policy
from gfn_envs.guides import ExitCapGuide, Guide
from gfn_envs.task import IllegalActionError, Task
from gfn_envs.unwrap import task_of

HYPERGRID = "gfn_envs.tasks.hypergrid:HyperGrid"

ENVIRONMENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "HyperGrid-v0": (HYPERGRID, {}),
    "HyperGrid-2x128-v0": (HYPERGRID, {"ndim": 2, "height": 128, "R0": 0.01}),
    "HyperGrid-2x256-v0": (HYPERGRID, {"ndim": 2, "height": 256, "R0": 0.01}),
    "HyperGrid-3x32-v0": (HYPERGRID, {"ndim": 3, "height": 32, "R0": 0.01}),
    "HyperGrid-4x16-v0": (HYPERGRID, {"ndim": 4, "height": 16, "R0": 0.01}),
    "BitSequence-v0": ("gfn_envs.tasks.bitseq:BitSequence", {}),
    "TFBind8-v0": ("gfn_envs.tasks.tfbind:TFBind8", {}),
    "RNABinding-v0": ("gfn_envs.tasks.rna:RNABinding", {}),
    "MoleculeString-v0": ("gfn_envs.tasks.molecules:MoleculeString", {}),
    "Ehrlich-v0": ("gfn_envs.tasks.ehrlich:Ehrlich", {}),
    "BayesNet-v0": ("gfn_envs.tasks.bayesnet:BayesNet", {}),
}
"""Registered names (without the ``gfn_envs/`` namespace): the task class and its default kwargs."""

for _name, (_task, _defaults) in ENVIRONMENTS.items():
    if f"gfn_envs/{_name}" not in registry:
        register(
            id=f"gfn_envs/{_name}",
            entry_point="gfn_envs.env:GFlowNetEnv",
            vector_entry_point="gfn_envs.env:GFlowNetVectorEnv",
            kwargs={"task": _task, **_defaults},
        )

__all__ = [
    "ENVIRONMENTS",
    "ExitCapGuide",
    "GFlowNetContractError",
    "GFlowNetEnv",
    "GFlowNetVectorEnv",
    "Guide",
    "IllegalActionError",
    "Task",
    "check_gfn_env",
    "check_task",
    "exact_distribution",
    "make_task",
    "metrics",
    "target_policy",
    "task_of",
]
