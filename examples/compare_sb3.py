"""GFlowNet agents against Stable-Baselines3 baselines on 2 × 16 HyperGrid (R0 = 0.01), exactly.

Every method gets the same budget of complete trajectories and is evaluated with the exact
terminal distribution of its sampler (dynamic programming over all 256 cells):

* ``RL-G``, ``RL-T``, ``TB``: gfn_agents presets (``make_agent``);
* ``PPO-soft``: MaskablePPO on the policy-dependent rewards log P_B (uniform) and
  log R(x) − log Z, minus log π of the policy itself (exact soft RL, :mod:`gfn_agents.sb3`);
* ``PPO-plain``: MaskablePPO on the bare env (log R(x) at exit): ordinary reward maximisation;
* ``SoftDQN``: masked soft DQN (Tiapkin et al. 2024, :mod:`gfn_agents.dqn`).

It prints a table of final exact TV, JSD and expected modes found (mean ± std over seeds) with the
wall time of each run, and writes a PNG of TV against trajectories plus the raw curves (JSON).

Example (the run recorded in docs/results.md)::

    python examples/compare_sb3.py --trajectories 6000 --seeds 0 1 2 --jobs 2 --out results/compare_sb3
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

import numpy as np

ENV_ID = "gfn_envs/HyperGrid-v0"
ENV_KWARGS = {"ndim": 2, "height": 16, "R0": 0.01}
METHODS = ("RL-G", "RL-T", "TB", "PPO-soft", "PPO-plain", "SoftDQN")
PPO_KWARGS = {"n_steps": 64, "batch_size": 256, "learning_rate": 3e-4}
PPO_ENVS = 16


def _final_metrics(policy: Any, task: Any) -> dict[str, float]:
    from gfn_agents import evaluate_sampler

    result = evaluate_sampler(policy, task)
    return {"tv": result["tv"], "jsd": result["jsd"], "modes_found": result["modes_found"]}


def _run_agent(name: str, seed: int, trajectories: int, every: int) -> dict[str, Any]:
    from gfn_agents import ExactEvalCallback, make_agent

    if name == "SoftDQN":
        from gfn_agents.dqn import SoftDQN

        agent = SoftDQN("MlpPolicy", ENV_ID, env_kwargs=ENV_KWARGS, seed=seed)
    else:
        agent = make_agent(name, ENV_ID, seed=seed, env_kwargs=ENV_KWARGS)
    callback = ExactEvalCallback(eval_freq=max(1, every // agent.batch_size))
    start = time.perf_counter()
    agent.learn(total_trajectories=trajectories, callback=callback)
    wall = time.perf_counter() - start
    curve = [(row["trajectories"], row["tv"]) for row in callback.history]
    train_time = callback.history[-1]["wall_time"] if callback.history else wall
    return {
        "curve": curve,
        "wall": wall,
        "train_time": train_time,
        **_final_metrics(agent, agent.task),
    }


def _run_sb3(name: str, seed: int, trajectories: int, every: int) -> dict[str, Any]:
    from sb3_contrib import MaskablePPO

    from gfn_agents.sb3 import (
        GFN_PPO_KWARGS,
        ExactTVCallback,
        SoftPolicyCallback,
        TrajectoryBudgetCallback,
        make_sb3_env,
        sb3_forward_policy,
    )
    from gfn_envs.tasks.hypergrid import HyperGrid

    task = HyperGrid(**ENV_KWARGS)
    reward = "soft" if name == "PPO-soft" else "log_reward"
    env = make_sb3_env(ENV_ID, n_envs=PPO_ENVS, reward=reward, **ENV_KWARGS)
    model = MaskablePPO("MlpPolicy", env, seed=seed, **PPO_KWARGS, **GFN_PPO_KWARGS)
    tv = ExactTVCallback(task, every=every)
    callbacks = [TrajectoryBudgetCallback(trajectories), tv]
    if reward == "soft":
        callbacks.insert(0, SoftPolicyCallback())
    start = time.perf_counter()
    model.learn(total_timesteps=10**9, callback=callbacks)
    wall = time.perf_counter() - start
    curve = [(row["trajectories"], row["tv"]) for row in tv.history]
    return {
        "curve": curve,
        "wall": wall,
        "train_time": tv.history[-1]["wall_time"],
        **_final_metrics(sb3_forward_policy(model), task),
    }


def run(job: tuple[str, int, int, int]) -> dict[str, Any]:
    """Train one method with one seed; return its curve, final metrics and wall time."""
    import torch

    torch.set_num_threads(1)
    name, seed, trajectories, every = job
    runner = _run_sb3 if name.startswith("PPO") else _run_agent
    try:
        result = runner(name, seed, trajectories, every)
    except (ValueError, ImportError, KeyError) as exc:  # e.g. an agent preset not available
        return {"method": name, "seed": seed, "error": f"{type(exc).__name__}: {exc}"}
    return {"method": name, "seed": seed, **result}


def _table(results: list[dict[str, Any]], methods: list[str]) -> str:
    from gfn_envs.tasks.hypergrid import HyperGrid

    n_modes = int(HyperGrid(**ENV_KWARGS).modes().sum())
    lines = [
        f"| method | exact TV | JSD | modes found (of {n_modes}, in 1000 draws) | "
        "wall time per run (s) | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for method in methods:
        rows = [r for r in results if r["method"] == method and "error" not in r]
        if not rows:
            errors = {r["error"] for r in results if r["method"] == method}
            lines.append(f"| {method} | not run: {'; '.join(sorted(errors))} | | | | |")
            continue

        def stat(key: str, digits: int, rows: list[dict[str, Any]] = rows) -> str:
            values = np.array([r[key] for r in rows], dtype=float)
            return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}"

        seeds = ",".join(str(r["seed"]) for r in rows)
        lines.append(
            f"| {method} | {stat('tv', 3)} | {stat('jsd', 4)} | {stat('modes_found', 2)} | "
            f"{stat('wall', 0)} | {seeds} |"
        )
    return "\n".join(lines)


def _plot(results: list[dict[str, Any]], methods: list[str], path: str, trajectories: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    grid = np.linspace(0, trajectories, 101)
    for method in methods:
        rows = [r for r in results if r["method"] == method and "error" not in r]
        if not rows:
            continue
        curves = np.array([np.interp(grid, *np.array(r["curve"]).T) for r in rows])
        mean = curves.mean(axis=0)
        (line,) = ax.plot(grid, mean, label=method)
        if len(rows) > 1:
            ax.fill_between(
                grid, curves.min(axis=0), curves.max(axis=0), alpha=0.2, color=line.get_color()
            )
    ax.set_xlabel("trajectories")
    ax.set_ylabel("exact total variation to R/Z")
    ax.set_ylim(0, 1)
    ax.set_title("2 × 16 HyperGrid, R0 = 0.01 (mean, min–max over seeds)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trajectories", type=int, default=6000, help="budget per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--every", type=int, default=500, help="evaluation period (trajectories)")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    parser.add_argument("--out", default="results/compare_sb3", help="output directory")
    args = parser.parse_args()
    if args.trajectories < 1 or args.every < 1 or args.jobs < 1:
        parser.error("--trajectories, --every and --jobs must be positive")
    os.makedirs(args.out, exist_ok=True)
    jobs = [(m, s, args.trajectories, args.every) for m in args.methods for s in args.seeds]
    start = time.perf_counter()
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(run, jobs))
    total = time.perf_counter() - start
    table = _table(results, args.methods)
    print(table)
    print(f"\ntotal wall time {total:.0f} s with {args.jobs} process(es), 1 torch thread each")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"args": vars(args), "total_seconds": total, "runs": results}, f, indent=1)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(table + "\n")
    _plot(
        results, args.methods, os.path.join(args.out, "tv_vs_trajectories.png"), args.trajectories
    )


if __name__ == "__main__":
    main()
