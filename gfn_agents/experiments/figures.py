"""Figures of an experiment folder (matplotlib, Agg backend, PNG).

* :func:`plot_metric`: one metric against trajectories (left) and against training wall time
  (right), per agent the mean over seeds with a min–max band; each seed's curve is interpolated
  linearly between evaluations and held at its last value after its end. Divergences that span
  more than a decade use a log scale; the claim's threshold is a dotted line.
* :func:`plot_heatmaps`: on 2-D grids, the target R/Z* beside each agent's learned terminal
  distribution P_F^T (mean over seeds), on one logarithmic colour scale.

Each agent has its colour; a uniform-P_B variant ``X-U`` shares ``X``'s colour, dashed.
Files are PNGs of 128 colours (:func:`save`), small enough to commit.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from PIL import Image  # noqa: E402

from gfn_agents.experiments.config import LOWER_IS_BETTER, Claim  # noqa: E402
from gfn_agents.experiments.files import write_bytes  # noqa: E402
from gfn_agents.experiments.runs import DISTRIBUTION  # noqa: E402
from gfn_agents.experiments.summary import Run  # noqa: E402

DPI = 80
COLOURS = 128
"""Resolution and palette size of the PNG figures: legible, and small enough to commit (a few
tens of kB each)."""


def save(fig: Any, path: Path, **kwargs: Any) -> None:
    """Write ``fig`` to ``path`` as a PNG of :data:`COLOURS` colours at :data:`DPI`, and close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, **kwargs)
    plt.close(fig)
    image = Image.open(buffer).convert("RGB").quantize(COLOURS, Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    image.save(out, format="png", optimize=True)
    write_bytes(Path(path), out.getvalue())


METRIC_LABELS = {
    "tv": "exact TV to R/Z*",
    "l1": "exact L1 to R/Z*",
    "jsd": "exact JSD to R/Z* (nats)",
    "kl": "exact KL(P* ‖ P_F^T) (nats)",
    "logz_error": "|log Z − log Z*|",
    "mode_mass": "P_F^T mass on the modes",
    "modes_found": "modes found",
    "top_k_reward": "mean reward of the top k",
    "top_k_diversity": "top-k diversity (Hamming)",
    "unique": "distinct objects sampled",
    "oracle_calls": "oracle calls",
}
COLORS = plt.get_cmap("tab10").colors


def styles(labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    """A colour per agent, except that ``X-U`` takes ``X``'s colour with a dashed line."""
    bases: list[str] = []
    out = {}
    for label in labels:
        variant = label.endswith("-U") and label.removesuffix("-U") in labels
        base = label.removesuffix("-U") if variant else label
        if base not in bases:
            bases.append(base)
        color = COLORS[bases.index(base) % len(COLORS)]
        out[label] = {"color": color, "linestyle": "--" if variant else "-"}
    return out


def band(curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, ...]:
    """(grid, mean, min, max) of curves (x, y), interpolated on a common grid of 200 points."""
    end = max(float(x[-1]) for x, _ in curves)
    grid = np.linspace(0.0, end, 200)
    values = np.array([np.interp(grid, x, y) for x, y in curves])
    return grid, values.mean(axis=0), values.min(axis=0), values.max(axis=0)


def _curves(runs: Sequence[Run], x: str, metric: str) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for run in runs:
        rows = [r for r in run.rows if r.get(metric) is not None]
        if rows:
            out.append((np.array([r[x] for r in rows], float), np.array([r[metric] for r in rows])))
    return out


def plot_metric(
    runs: dict[str, list[Run]],
    metric: str,
    path: Path,
    title: str,
    claim: Claim | None = None,
) -> bool:
    """Write ``path`` (see the module docstring); False (nothing written) if no run has
    ``metric``."""
    labels = [label for label, group in runs.items() if _curves(group, "trajectories", metric)]
    if not labels:
        return False
    style = styles(list(runs))
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.3), sharey=True)
    lows, highs = [], []
    for label in labels:
        for ax, x in zip(axes, ("trajectories", "wall_time"), strict=True):
            curves = _curves(runs[label], x, metric)
            grid, mean, low, high = band(curves)
            lows.append(float(low.min()))
            highs.append(float(high.max()))
            n = len(curves)
            ax.plot(grid, mean, label=f"{label} ({n} seed{'s' * (n > 1)})", lw=1.6, **style[label])
            if n > 1:
                ax.fill_between(grid, low, high, color=style[label]["color"], alpha=0.15, lw=0)
    if metric in LOWER_IS_BETTER and min(lows) > 0 and max(highs) > 10 * min(lows):
        axes[0].set_yscale("log")
    if claim is not None and claim.metric == metric:
        for ax in axes:
            ax.axhline(claim.threshold, color="0.3", ls=":", lw=1)
        axes[0].annotate(
            f"threshold {claim.threshold:g}",
            (0.01, claim.threshold),
            xycoords=("axes fraction", "data"),
            fontsize=8,
            color="0.3",
            va="bottom",
        )
    axes[0].set_xlabel("training trajectories")
    axes[1].set_xlabel("training wall time (s, evaluations excluded)")
    axes[0].set_ylabel(METRIC_LABELS.get(metric, metric))
    for ax in axes:
        ax.grid(True, which="major", alpha=0.3)
        ax.set_xlim(left=0)
    axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)
    fig.suptitle(f"{title} (mean, min–max band over seeds)", fontsize=11)
    fig.tight_layout()
    save(fig, path)
    return True


def plot_heatmaps(directory: Path, target: np.ndarray, labels: Sequence[str], path: Path) -> bool:
    """Write the 2-D grid heatmaps (see the module docstring); False if no run saved one."""
    panels: list[tuple[str, np.ndarray]] = [("target $R(x)/Z^*$", target)]
    for label in labels:
        grids = [np.load(p) for p in sorted((directory / label).glob(f"seed-*/{DISTRIBUTION}"))]
        if grids:
            n = len(grids)
            panels.append((f"{label} ({n} seed{'s' * (n > 1)})", np.mean(grids, axis=0)))
    if len(panels) == 1:
        return False
    nrows = math.ceil(len(panels) / 6)
    ncols = math.ceil(len(panels) / nrows)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.3 * ncols + 0.8, 2.4 * nrows), squeeze=False)
    low = max(float(target[target > 0].min()) / 10, 1e-12)
    norm = LogNorm(vmin=low, vmax=float(max(p.max() for _, p in panels)))
    image = None
    for ax, (name, grid) in zip(axes.flat, panels, strict=False):
        image = ax.imshow(np.clip(grid, low, None).T, origin="lower", norm=norm, cmap="viridis")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.colorbar(image, ax=axes, shrink=0.8, label="probability (log scale)")
    fig.suptitle(
        r"terminal distributions: the target and each agent's final $P_F^\top$ (mean over seeds)",
        fontsize=11,
    )
    save(fig, path, bbox_inches="tight")
    return True
