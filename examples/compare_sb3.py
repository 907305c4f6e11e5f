"""GFlowNet agents against Stable-Baselines3 baselines on 2 × 16 HyperGrid (R0 = 0.01), exactly.

The experiment is the shipped config ``configs/paper/sb3-hypergrid-2x16.toml`` (RL-G, RL-T, TB,
PPO-soft, PPO-plain and SoftDQN, 8,000 trajectories, seeds 0–2, an exact evaluation every 500
trajectories); this script runs it through the ``gfn-bench`` runner::

    python examples/compare_sb3.py --jobs 2

is ``gfn-bench run configs/paper/sb3-hypergrid-2x16.toml --jobs 2``: the runs, ``summary.json``,
``report.md`` and the figures land in ``runs/sb3-hypergrid-2x16/``. Any ``gfn-bench run`` option
works (``--out``, ``--seeds``, ``--threads``, ``--print-commands``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from gfn_agents.experiments.cli import main

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "paper" / "sb3-hypergrid-2x16.toml"

if __name__ == "__main__":
    sys.exit(main(["run", str(CONFIG), *sys.argv[1:]]))
