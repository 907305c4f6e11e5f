"""Stable-Baselines3 on gfn-gym tasks.

* :mod:`gfn_agents.sb3.bridge`: :func:`make_sb3_env`, a masked SB3 ``VecEnv`` over our tasks with
  policy-dependent rewards (:class:`GFlowNetSB3VecEnv` over the native vector env, or SB3's
  ``DummyVecEnv``);
* :mod:`gfn_agents.sb3.policy`: :func:`sb3_forward_policy` turns a trained SB3 actor-critic into
  the forward policy of the exact evaluator; :func:`sample_sb3` samples objects with it;
* :mod:`gfn_agents.sb3.callbacks`: :class:`SoftPolicyCallback` (feeds the policy being trained
  into ``reward="soft"``), :class:`TrajectoryBudgetCallback` and :class:`ExactTVCallback`;
* :mod:`gfn_agents.sb3.algorithms`: :func:`masked_a2c` and :data:`GFN_PPO_KWARGS`.
"""

from gfn_agents.sb3.algorithms import GFN_PPO_KWARGS, masked_a2c
from gfn_agents.sb3.bridge import GFlowNetSB3VecEnv, make_sb3_env
from gfn_agents.sb3.callbacks import ExactTVCallback, SoftPolicyCallback, TrajectoryBudgetCallback
from gfn_agents.sb3.policy import sample_sb3, sb3_forward_policy

__all__ = [
    "GFN_PPO_KWARGS",
    "ExactTVCallback",
    "GFlowNetSB3VecEnv",
    "SoftPolicyCallback",
    "TrajectoryBudgetCallback",
    "make_sb3_env",
    "masked_a2c",
    "sample_sb3",
    "sb3_forward_policy",
]
