"""`make demo`: RL-G against TB on the 2 × 16 HyperGrid with R0 = 0.01, measured exactly.

Both agents use the paper's settings (P_F and P_B MLPs 4 × 256, value networks 2 × 256, Adam 1e-3,
log Z 0.1, batches of 128 trajectories; RL-G with λ = 0.99 and its guided backward policy). Each
trains for about ``--seconds`` of wall time (default 60). Every ``--eval-every`` iterations the exact
terminal distribution P_F^T of its sampler is computed by dynamic programming over all 256 cells and
compared with the target P* = R/Z: TV = ½Σ|P_F^T − P*|.

A progress bar shows each agent's training time, trajectories and latest exact TV. The script then
prints a table of exact TV against trajectories seen (every agent's final point included) and
writes ``demo_out/tv_vs_trajectories.png`` (TV against trajectories and against wall time) and the
raw curves as JSON. Run it with::

    .venv/bin/python examples/demo.py [--seconds 60] [--out demo_out]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import torch
from stable_baselines3.common.callbacks import BaseCallback
from tqdm.auto import tqdm

import gfn_envs  # noqa: F401  (registers the ids)
from gfn_agents import ExactEvalCallback, make_agent

ENV_ID = "gfn_envs/HyperGrid-v0"
GRID = {"ndim": 2, "height": 16, "R0": 0.01}
AGENTS = ("RL-G", "TB")


class WallClockLimit(BaseCallback):
    """Stops training once ``seconds`` of wall time have passed since training started, with a
    progress bar over those seconds that shows the trajectories and the latest exact TV."""

    def __init__(self, seconds: float, name: str, evaluation: ExactEvalCallback) -> None:
        super().__init__()
        self.seconds, self.name, self.evaluation = seconds, name, evaluation
        self._start = 0.0
        self._bar: Any = None

    def _on_training_start(self) -> None:
        self._start = time.perf_counter()
        layout = "{desc}: {percentage:3.0f}%|{bar}| {n}/{total} s{postfix}"
        self._bar = tqdm(total=round(self.seconds), desc=self.name, bar_format=layout)

    def _on_step(self) -> bool:
        elapsed = min(time.perf_counter() - self._start, self.seconds)
        self._bar.update(round(elapsed) - self._bar.n)
        tv = self.evaluation.history[-1]["tv"]
        self._bar.set_postfix_str(f"trajectories={self.model.num_trajectories}, tv={tv:.4f}")
        return elapsed < self.seconds

    def _on_training_end(self) -> None:
        self._bar.close()


def train(name: str, seconds: float, eval_every: int, seed: int) -> list[dict[str, float]]:
    """Train preset ``name`` for about ``seconds``; the exact-evaluation history (the callback
    also evaluates the final sampler when training stops between evaluations)."""
    agent = make_agent(name, ENV_ID, env_kwargs=GRID, seed=seed)
    evaluation = ExactEvalCallback(eval_freq=eval_every)
    limit = WallClockLimit(seconds, name, evaluation)
    agent.learn(total_trajectories=10**9, callback=[evaluation, limit])
    return evaluation.history


def print_table(curves: dict[str, list[dict[str, float]]]) -> None:
    """Exact TV of every agent at about 12 trajectory counts any of them was evaluated at, plus
    each agent's final point."""
    counts = sorted({int(row["trajectories"]) for rows in curves.values() for row in rows})
    lookup = {
        name: {int(row["trajectories"]): row for row in rows} for name, rows in curves.items()
    }
    step = max(1, len(counts) // 12)
    finals = {int(rows[-1]["trajectories"]) for rows in curves.values()}
    shown = sorted(set(counts[::step]) | finals)
    header = f"{'trajectories':>12}" + "".join(f"{name + ' TV':>12}" for name in curves)
    print(header)
    print("-" * len(header))
    for count in shown:
        cells = []
        for name in curves:
            row = lookup[name].get(count)
            cells.append(f"{row['tv']:>12.4f}" if row else f"{'':>12}")
        print(f"{count:>12}" + "".join(cells))
    print()
    for name, rows in curves.items():
        final = rows[-1]
        print(
            f"{name}: {final['trajectories']:.0f} trajectories in {final['wall_time']:.0f} s "
            f"of training, final TV {final['tv']:.4f}, JSD {final['jsd']:.4f}, "
            f"|log Z error| {final['logz_error']:.3f}"
        )


def plot(curves: dict[str, list[dict[str, float]]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for name, rows in curves.items():
        tv = [r["tv"] for r in rows]
        axes[0].plot([r["trajectories"] for r in rows], tv, label=name)
        axes[1].plot([r["wall_time"] for r in rows], tv, label=name)
    axes[0].set_xlabel("trajectories")
    axes[1].set_xlabel("training wall time (s, evaluation excluded)")
    axes[0].set_ylabel("exact TV(P_F^T, P*)")
    axes[0].set_yscale("log")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("HyperGrid 2x16, R0 = 0.01")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="training time per agent")
    parser.add_argument("--eval-every", type=int, default=10, help="iterations between evals")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="demo_out", help="output directory")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    print(
        f"Training {', '.join(AGENTS)} on HyperGrid 2x16 (R0 = 0.01) for about "
        f"{args.seconds:.0f} s each; exact TV every {args.eval_every} iterations.\n"
    )
    curves: dict[str, Any] = {}
    for name in AGENTS:
        curves[name] = train(name, args.seconds, args.eval_every, args.seed)
    print_table(curves)
    png = os.path.join(args.out, "tv_vs_trajectories.png")
    plot(curves, png)
    with open(os.path.join(args.out, "curves.json"), "w") as f:
        json.dump(curves, f, indent=1)
    print(f"\nwrote {png} and {os.path.join(args.out, 'curves.json')}")


if __name__ == "__main__":
    main()
