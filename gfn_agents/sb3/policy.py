"""SB3 policies as gfn-gym samplers: their P_F for the exact evaluator, and Monte-Carlo samples.

:func:`sb3_forward_policy` turns a trained SB3 actor-critic (PPO, A2C, MaskablePPO, TRPO) into a
forward policy with the convention of :data:`gfn_envs.scoring.Policy`, so
:func:`gfn_envs.exact.exact_distribution` and :func:`gfn_agents.evaluate_sampler` give SB3
baselines exact TV, JSD and modes like our agents. :func:`sample_sb3` samples terminal objects by
running ``model.predict`` with masks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from gfn_envs.env import GFlowNetVectorEnv
from gfn_envs.exact import ForwardPolicy
from gfn_envs.scoring import masked_log_softmax
from gfn_envs.unwrap import task_of


def _policy_of(model: Any) -> Any:
    policy = getattr(model, "policy", model)
    if not hasattr(policy, "get_distribution"):
        raise TypeError(
            "sb3_forward_policy needs an SB3 actor-critic model or policy (PPO, A2C, MaskablePPO, "
            f"TRPO), got {type(model).__name__}"
        )
    return policy


def sb3_forward_policy(model: Any) -> ForwardPolicy:
    """The forward policy of an SB3 actor-critic, as ``(obs, mask) -> masked log-probs`` (a
    :data:`gfn_envs.scoring.Policy`: log-probabilities are valid logits).

    log π(a|s) is the log-softmax of the policy's logits over the legal actions. For a masked
    policy (MaskablePPO) this is the policy itself; for an unmasked one on an env whose illegal
    actions are no-ops, it is the distribution of the next legal move (retries are geometric), so it
    is the sampler's distribution either way. The callable reads the model's current parameters.
    """
    policy = _policy_of(model)

    def forward_policy(obs: Tensor, mask: Tensor) -> Tensor:
        with torch.no_grad():
            distribution = policy.get_distribution(obs.to(policy.device, torch.float32))
            logits = getattr(distribution.distribution, "logits", None)
            if logits is None or logits.shape != mask.shape:
                raise TypeError("sb3_forward_policy needs a policy over a Discrete action space")
            return masked_log_softmax(logits.to(mask.device), mask)

    return forward_policy


def sample_sb3(model: Any, env: Any, n: int, seed: int = 0, batch: int = 4096) -> Tensor:
    """``n`` terminal objects sampled by running ``model.predict`` with masks (Monte Carlo).

    Args:
        model: an SB3 model whose ``predict`` accepts ``action_masks`` (MaskablePPO).
        env: the task or a gfn_envs env of it.
        n: number of objects.
        seed: seeds the policy's sampling (torch's global generator, as SB3 uses).
        batch: trajectories sampled in parallel.
    """
    task = task_of(env)
    torch.manual_seed(seed)
    out: list[Tensor] = []
    while sum(len(x) for x in out) < n:
        venv = GFlowNetVectorEnv(min(batch, n), task, autoreset_mode="disabled")
        obs, info = venv.reset()
        done = np.zeros(venv.num_envs, dtype=bool)
        while not done.all():
            actions, _ = model.predict(obs, action_masks=info["action_mask"], deterministic=False)
            obs, _, done, _, info = venv.step(np.asarray(actions))
        out.append(torch.as_tensor(info["state"]))
    return torch.cat(out)[:n]
