"""``make demo``'s script: its table shows every agent's final point, and training shows a
progress bar and ends with an evaluation of the final sampler."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.py"


def load_demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo", DEMO)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def curve(counts: list[int], tv: float) -> list[dict[str, float]]:
    return [
        {"trajectories": c, "wall_time": 1.0, "tv": tv, "jsd": 0.1, "logz_error": 0.2}
        for c in counts
    ]


def test_the_table_includes_every_agents_final_point(capsys: Any) -> None:
    """RL-G stops at 6,528 trajectories, off the table's grid of every other count and before TB's
    last count; its final point is still a row."""
    demo = load_demo()
    rl_g = curve([1280 * k for k in range(40)] + [6528], 0.05)
    tb = curve([1280 * k for k in range(60)], 0.2)
    demo.print_table({"RL-G": rl_g, "TB": tb})
    rows = {
        line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line[:1] == " "
    }
    assert "6528" in rows and "0.0500" in rows["6528"]
    assert str(1280 * 59) in rows and "0.2000" in rows[str(1280 * 59)]


def test_training_shows_a_bar_and_evaluates_the_final_sampler(capsys: Any) -> None:
    demo = load_demo()
    history = demo.train("TB", seconds=0.3, eval_every=1000, seed=0)
    assert history[0]["trajectories"] == 0
    assert history[-1]["trajectories"] > 0 and history[-1]["trajectories"] % 128 == 0
    err = capsys.readouterr().err
    assert "TB" in err and "trajectories=" in err and "tv=" in err
