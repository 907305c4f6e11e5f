"""HyperGrid (Bengio et al. 2021): walk on a D-dimensional grid of side H, reward in the corners.

States are integer vectors x ∈ {0, …, H−1}^D with s0 = 0. Forward action i < D adds 1 to
coordinate i (legal while x_i < H−1); action D is exit, legal in every state, so every cell is a
terminal object. Backward action i subtracts 1 from coordinate i (legal while x_i > 0).
Observations are K-hot: D one-hot blocks of size H.

Rewards, with a_d = |x_d/(H−1) − 0.5|:

* ``"original"``: R(x) = R0 + R1·∏_d 1[0.25 < a_d] + R2·∏_d 1[0.3 < a_d < 0.4]
* ``"cosine"``:   R(x) = R0 + R1·∏_d (cos(50·a_d) + 1)·φ(5·a_d), φ the standard normal density
  (the variant of the paper's code and of torchgfn; R2 is unused).

**Band membership is decided in exact integer arithmetic.** With d = |2x − (H−1)|, a = d / (2(H−1)),
so a > 0.25 ⟺ 2d > H−1 and 0.3 < a < 0.4 ⟺ 6(H−1) < 10d < 8(H−1). No rounding can put a cell on
the wrong side of a band edge, and mirror cells x and H−1−x (same d) always get the same reward. On
every grid this equals the float32 arithmetic of the paper's code and of torchgfn (a float64
evaluation of a_d would not: on 16 × 16, x = 12 would fall inside the 0.3 edge while its mirror
x = 3 stays outside). The cosine reward is computed in float64 from a = d / (2(H−1)), so it is
symmetric too.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gfn_envs.guides import ExitCapGuide
from gfn_envs.rendering import grid_image
from gfn_envs.task import Task

REWARDS = ("original", "cosine")


class HyperGrid(Task):
    """The HyperGrid task. See the module docstring for the MDP and the rewards."""

    def __init__(
        self,
        ndim: int = 2,
        height: int = 8,
        reward: str = "original",
        R0: float = 0.1,
        R1: float = 0.5,
        R2: float = 2.0,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__(device)
        if isinstance(ndim, bool) or not isinstance(ndim, int) or ndim < 1:
            raise ValueError(f"ndim must be an integer >= 1, got {ndim!r}")
        if isinstance(height, bool) or not isinstance(height, int) or height < 2:
            raise ValueError(f"height must be an integer >= 2, got {height!r}")
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
        for name, value, low in (("R0", R0, 0.0), ("R1", R1, 0.0), ("R2", R2, 0.0)):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < low:
                raise ValueError(f"{name} must be a finite number >= {low}, got {value!r}")
        if R0 <= 0:
            raise ValueError(f"R0 must be > 0 so that every log-reward is finite, got {R0!r}")
        self.ndim, self.height, self.reward = ndim, height, reward
        self.R0, self.R1, self.R2 = float(R0), float(R1), float(R2)
        self.state_shape = (ndim,)
        self.n_actions = ndim + 1
        self.n_backward_actions = ndim
        self.obs_dim = ndim * height
        self.max_length = ndim * (height - 1) + 1
        self._strides = height ** torch.arange(ndim - 1, -1, -1, device=self.device)
        # Row a < ndim of _moves is the unit vector of coordinate a; row ndim (exit) is zero.
        self._moves = torch.eye(ndim + 1, ndim, dtype=torch.long, device=self.device)
        self._no_move = torch.tensor(ndim, device=self.device)
        self._eye = torch.eye(height, device=self.device)
        self._shade: np.ndarray | None = None
        # Per-coordinate factors of the reward, so log_reward is a gather and two products. The
        # bands are integer comparisons on d = |2x − (H−1)| (see the module docstring).
        d = (2 * torch.arange(height, device=self.device) - (height - 1)).abs()
        if reward == "original":
            band1 = 2 * d > height - 1
            band2 = (6 * (height - 1) < 10 * d) & (10 * d < 8 * (height - 1))
            self._factors = torch.stack([band1, band2]).double()
            self._weights = torch.tensor(
                [self.R1, self.R2], dtype=torch.float64, device=self.device
            )
        else:
            ax = d.double() / (2 * (height - 1))
            pdf = torch.exp(-0.5 * (5 * ax) ** 2) / math.sqrt(2 * math.pi)
            self._factors = ((torch.cos(50 * ax) + 1) * pdf).unsqueeze(0)
            self._weights = torch.tensor([self.R1], dtype=torch.float64, device=self.device)

    def s0(self, batch_size: int) -> Tensor:
        return torch.zeros(batch_size, self.ndim, dtype=torch.long, device=self.device)

    def forward_mask(self, states: Tensor) -> Tensor:
        return torch.nn.functional.pad(states < self.height - 1, (0, 1), value=True)

    def backward_mask(self, states: Tensor) -> Tensor:
        return states > 0

    def is_terminal(self, states: Tensor) -> Tensor:
        return torch.ones(len(states), dtype=torch.bool, device=states.device)

    def is_initial(self, states: Tensor) -> Tensor:
        return (states == 0).all(dim=1)

    def step(self, states: Tensor, actions: Tensor) -> Tensor:
        return states + self._moves[actions]

    def backward_step(self, states: Tensor, actions: Tensor) -> Tensor:
        return states - self._moves[actions]

    def step_where(self, states: Tensor, actions: Tensor, where: Tensor) -> Tensor:
        """One table lookup: the unit vector of the action on moving rows, the zero row (index
        ``ndim``, also exit's) on the others."""
        return states + self._moves[torch.where(where, actions, self._no_move)]

    def backward_step_where(self, states: Tensor, actions: Tensor, where: Tensor) -> Tensor:
        """As :meth:`step_where`, subtracting."""
        return states - self._moves[torch.where(where, actions, self._no_move)]

    def backward_action(self, states: Tensor, actions: Tensor) -> Tensor:
        return actions

    def forward_action(self, states: Tensor, actions: Tensor) -> Tensor:
        return actions

    def log_reward(self, states: Tensor) -> Tensor:
        """log R(x), with each product over coordinates read from per-coordinate tables."""
        products = self._factors[:, states].prod(dim=2)
        return (self.R0 + self._weights @ products).log().float()

    def validate_states(self, states: Any, name: str = "states") -> Tensor:
        """:meth:`Task.validate_states`, and every coordinate must lie in ``[0, height)``."""
        states = super().validate_states(states, name)
        outside = ((states < 0) | (states >= self.height)).any(dim=1)
        if bool(outside.any()):
            row = states[outside][0].tolist()
            raise ValueError(f"{name} must have coordinates in [0, {self.height - 1}], got {row}")
        return states

    def encode(self, states: Tensor) -> Tensor:
        """K-hot: row x_d of the identity for each coordinate (one embedding lookup)."""
        return torch.nn.functional.embedding(states, self._eye).view(len(states), self.obs_dim)

    def render_rgb(self, state: Tensor) -> np.ndarray:
        """2-D grids: the H × H grid, cells shaded by R(x)/max R, the current cell in red (row
        x_0 from the top, column x_1 from the left). Other dimensions: :meth:`Task.render_rgb`."""
        if self.ndim != 2:
            return super().render_rgb(state)
        if self._shade is None:
            log_r = self.log_reward(self.all_states()).double()
            self._shade = (log_r - log_r.max()).exp().view(self.height, self.height).cpu().numpy()
        i, j = (int(v) for v in state.tolist())
        return grid_image(self._shade, (i, j))

    def default_guide(self) -> ExitCapGuide:
        """P_F with exit capped at log 1e-5 where R(x) ≤ R0 (paper section 2.7)."""
        return ExitCapGuide(self, threshold=math.log(self.R0) + 1e-6, cap=math.log(1e-5))

    @property
    def enumerable(self) -> bool:
        return True

    def all_states(self) -> Tensor:
        """All H^D cells in lexicographic order, which is a topological order of the grid."""
        index = torch.arange(self.height**self.ndim, device=self.device)
        return (index.unsqueeze(1) // self._strides) % self.height

    def state_index(self, states: Tensor) -> Tensor:
        return (states * self._strides).sum(dim=1)
