"""Quickstart: train RL-G on the 2 × 8 HyperGrid, evaluate it exactly, sample, save and reload.

.venv/bin/python examples/quickstart.py
"""

from __future__ import annotations

import torch

import gfn_envs  # noqa: F401  (registers the gfn_envs/... ids)
from gfn_agents import ExactEvalCallback, PolicyGradientGFN, evaluate_sampler, make_agent

torch.set_num_threads(1)  # small networks: one thread is fastest

# RL-G: policy-gradient GFlowNet with P_B trained towards the task's guide (paper section 2.7).
agent = make_agent(
    "RL-G",
    "gfn_envs/HyperGrid-v0",
    env_kwargs={"ndim": 2, "height": 8, "R0": 0.1},
    net_arch=(64, 64),
    value_net_arch=(64, 64),
    batch_size=64,
    seed=0,
)

# Exact TV every 10 iterations; stop as soon as TV <= 0.05.
evaluation = ExactEvalCallback(eval_freq=10, tv_threshold=0.05)
agent.learn(total_trajectories=40_000, callback=evaluation, progress_bar=True)
for row in evaluation.history[:: max(1, len(evaluation.history) // 6)] + evaluation.history[-1:]:
    print(f"{row['trajectories']:>7.0f} trajectories  TV {row['tv']:.4f}")

metrics = evaluate_sampler(agent)  # exact: dynamic programming over all 64 cells
print({k: round(v, 4) for k, v in metrics.items()})
print("five samples:", agent.sample(5).tolist())

agent.save("runs/quickstart.zip")
restored = PolicyGradientGFN.load("runs/quickstart.zip")  # env rebuilt from the saved id/kwargs
assert evaluate_sampler(restored)["tv"] == metrics["tv"]
print("saved and reloaded runs/quickstart.zip")
