"""Small uint8 RGB pictures of states, for ``render_mode="rgb_array"``.

Two drawings serve every task: :func:`cells_image`, the entries of a state as a strip of coloured
cells (the default of :meth:`gfn_envs.task.Task.render_rgb`), and :func:`grid_image`, a 2-D grid
with shaded cells and one marked cell (HyperGrid). Both return ``[H, W, 3]`` uint8 arrays, with
1-pixel white separators between cells of at least 3 pixels.
"""

from __future__ import annotations

import numpy as np

PALETTE = np.array(
    [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ],
    dtype=np.uint8,
)
"""Colours of the values 0, 1, 2, … (cycled)."""

EMPTY = np.array((224, 224, 224), dtype=np.uint8)
"""Colour of negative values (empty slots)."""

MARK = np.array((214, 39, 40), dtype=np.uint8)
"""Colour of the marked cell of :func:`grid_image`."""


def _draw(colours: np.ndarray, cell: int) -> np.ndarray:
    """Cells ``[rows, cols, 3]`` scaled to ``cell`` pixels each, with 1-pixel white separators
    when cells are at least 3 pixels wide."""
    rows, cols = colours.shape[:2]
    gap = 1 if cell >= 3 else 0
    image = np.full((rows * (cell + gap) + gap, cols * (cell + gap) + gap, 3), 255, np.uint8)
    ys = (gap + np.arange(rows)[:, None] * (cell + gap) + np.arange(cell)).ravel()
    xs = (gap + np.arange(cols)[:, None] * (cell + gap) + np.arange(cell)).ravel()
    image[ys[:, None], xs[None, :]] = colours.repeat(cell, axis=0).repeat(cell, axis=1)
    return image


def cells_image(values: np.ndarray, columns: int = 16, cell: int = 8) -> np.ndarray:
    """The integers ``values`` (any shape, read row-major) as rows of at most ``columns`` cells.

    Value v ≥ 0 gets ``PALETTE[v % 10]``, a negative value gets ``EMPTY``; padding after the last
    value is white.
    """
    flat = np.asarray(values, dtype=np.int64).ravel()
    if columns < 1 or cell < 1:
        raise ValueError(f"columns and cell must be >= 1, got {columns} and {cell}")
    cols = max(1, min(columns, len(flat)))
    rows = max(1, -(-len(flat) // cols))
    colours = np.full((rows * cols, 3), 255, dtype=np.uint8)
    colours[: len(flat)] = np.where(
        (flat < 0)[:, None], EMPTY, PALETTE[np.maximum(flat, 0) % len(PALETTE)]
    )
    return _draw(colours.reshape(rows, cols, 3), cell)


def grid_image(shade: np.ndarray, marked: tuple[int, int], size: int = 256) -> np.ndarray:
    """A 2-D grid of ``shade.shape`` cells, cell (i, j) grey by ``shade[i, j]`` ∈ [0, 1] (1 dark),
    and the cell ``marked`` in red; cells are scaled so the picture is at most about ``size`` pixels
    wide (at least 1 pixel per cell).

    Row i is drawn from the top, column j from the left.
    """
    shade = np.clip(np.asarray(shade, dtype=np.float64), 0.0, 1.0)
    if shade.ndim != 2:
        raise ValueError(f"shade must be 2-D, got shape {list(shade.shape)}")
    grey = np.round(255 - 175 * shade).astype(np.uint8)
    colours = np.repeat(grey[:, :, None], 3, axis=2)
    colours[marked] = MARK
    cell = max(1, size // max(shade.shape) - 1)
    return _draw(colours, cell)
