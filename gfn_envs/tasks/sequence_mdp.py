"""The two generation MDPs of fixed-length sequence tasks, one class each.

A sequence x = (x_0, …, x_{L−1}) has L symbols from {0, …, K−1}; states are long tensors ``[B, L]``
with −1 marking an empty slot. :class:`~gfn_envs.tasks.sequence.SequenceTask` holds one of these
objects (``task.generation``, chosen by its ``mdp=`` argument) and delegates the DAG to it; the
rewards, the modes and the enumeration cache stay with the task.

:class:`FillMDP` (``mdp="fill"``) — fill any empty slot (the paper's ``BioSeqEnv``, section 3.2)
    * forward action a ∈ [0, K·L): write symbol ``a // L`` at position ``a % L``; legal iff that
      position is empty. Exit (index K·L) is legal iff the sequence is full.
    * backward action b ∈ [0, K·L) with the same encoding: erase the symbol at position ``b % L``;
      legal iff that slot holds symbol ``b // L``. ``backward_action`` and ``forward_action`` are
      the identity.
    * every trajectory has exactly L fill steps and an exit; each x has L! trajectories.
    * (K+1)^L states; every pattern of empty slots is a state.

:class:`PrependAppendMDP` (``mdp="prepend_append"``) — grow a contiguous word at either end
(``BioSeqPendEnv``, section 3.3)
    * states are left-aligned: the first n slots hold the word, the rest are −1.
    * forward action a < K appends symbol a; K ≤ a < 2K prepends symbol a − K (the word shifts
      right); exit (index 2K) is legal iff the word is full. Growing actions are legal iff it is not.
    * backward action 0 removes the last symbol, 1 removes the first one (the word shifts left);
      both are legal iff the word is not empty. Append maps to backward 0, prepend to backward 1.
      At the empty word "append c" and "prepend c" are two distinct edges to the same child, and
      at a one-symbol word both backward actions lead to s0: the DAG has parallel edges, which the
      exact DP of :mod:`gfn_envs.exact` counts correctly.
    * Σ_{i ≤ L} K^i states.

Both enumerate their states by the number of filled slots (a topological order), then by the
big-endian value of the sequence, so the last level is the K^L full sequences in lexicographic order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

INT64_SAFE = 2**62
"""Place values K^i stay exact in int64 below this bound."""


class SequenceMDP(ABC):
    """The DAG of one generation MDP over sequences of ``length`` symbols from ``n_symbols``.

    Subclasses set ``n_actions`` (exit last), ``n_backward_actions`` and ``n_states``. Methods take
    long states ``[B, L]`` and never modify them.
    """

    name: str
    n_actions: int
    n_backward_actions: int
    n_states: int

    def __init__(self, length: int, n_symbols: int, device: torch.device) -> None:
        self.length, self.n_symbols, self.device = length, n_symbols, device
        self.symbols = torch.arange(n_symbols, device=device)

    @property
    def place_values(self) -> Tensor:
        """Big-endian place values K^{L−1−i}, long ``[L]`` (needs K^L < 2^62)."""
        if self.n_symbols**self.length >= INT64_SAFE:
            raise ValueError(
                f"K^L = {self.n_symbols**self.length} does not fit an int64 index; use the "
                "sequences directly"
            )
        return self.n_symbols ** torch.arange(self.length - 1, -1, -1, device=self.device)

    @staticmethod
    def lengths(states: Tensor) -> Tensor:
        """Long ``[B]``: number of filled slots."""
        return (states >= 0).sum(dim=1)

    def malformed(self, states: Tensor) -> Tensor:
        """Bool ``[B]``: rows whose pattern of empty slots is not a state of this MDP (symbols
        are assumed in range)."""
        return torch.zeros(len(states), dtype=torch.bool, device=states.device)

    @abstractmethod
    def forward_mask(self, states: Tensor) -> Tensor:
        """Bool ``[B, n_actions]``: the legal forward actions, exit (last) iff the word is full."""

    @abstractmethod
    def backward_mask(self, states: Tensor) -> Tensor:
        """Bool ``[B, n_backward_actions]``."""

    @abstractmethod
    def step(self, states: Tensor, actions: Tensor) -> Tensor:
        """Children reached by non-exit forward ``actions``."""

    @abstractmethod
    def backward_step(self, states: Tensor, actions: Tensor) -> Tensor:
        """Parents reached by backward ``actions``."""

    @abstractmethod
    def backward_action(self, states: Tensor, actions: Tensor) -> Tensor:
        """The backward action at ``step(states, actions)`` that undoes ``actions``."""

    @abstractmethod
    def forward_action(self, states: Tensor, actions: Tensor) -> Tensor:
        """The forward action at ``backward_step(states, actions)`` that redoes ``actions``."""

    @abstractmethod
    def enumerate(self) -> Tensor:
        """Every state, by number of filled slots, then by big-endian value."""

    @abstractmethod
    def index(self, states: Tensor) -> Tensor:
        """Long ``[B]``: the position of each state in :meth:`enumerate`."""


class FillMDP(SequenceMDP):
    """Write any symbol into any empty slot; see the module docstring."""

    name = "fill"

    def __init__(self, length: int, n_symbols: int, device: torch.device) -> None:
        super().__init__(length, n_symbols, device)
        self.n_actions = n_symbols * length + 1
        self.n_backward_actions = n_symbols * length
        self.n_states = (n_symbols + 1) ** length
        self._lookup: Tensor | None = None

    def code(self, states: Tensor) -> Tensor:
        """Long ``[B]``: Σ_i (s_i + 1)(K+1)^{L−1−i}, a bijection of states onto [0, (K+1)^L)."""
        weights = (self.n_symbols + 1) ** torch.arange(
            self.length - 1, -1, -1, device=states.device
        )
        return ((states + 1) * weights).sum(dim=1)

    def forward_mask(self, states: Tensor) -> Tensor:
        empty = states < 0
        full = ~empty.any(dim=1, keepdim=True)
        return torch.cat([empty.repeat(1, self.n_symbols), full], dim=1)

    def backward_mask(self, states: Tensor) -> Tensor:
        return (states.unsqueeze(1) == self.symbols.view(1, -1, 1)).flatten(1)

    def step(self, states: Tensor, actions: Tensor) -> Tensor:
        L = self.length
        return states.scatter(1, (actions % L).unsqueeze(1), (actions // L).unsqueeze(1))

    def backward_step(self, states: Tensor, actions: Tensor) -> Tensor:
        return states.scatter(1, (actions % self.length).unsqueeze(1), -1)

    def backward_action(self, states: Tensor, actions: Tensor) -> Tensor:
        return actions.clone()

    def forward_action(self, states: Tensor, actions: Tensor) -> Tensor:
        return actions.clone()

    def enumerate(self) -> Tensor:
        """All (K+1)^L fill patterns; also builds the code → position table of :meth:`index`."""
        K, L = self.n_symbols, self.length
        weights = (K + 1) ** torch.arange(L - 1, -1, -1, device=self.device)
        codes = torch.arange(self.n_states, device=self.device)
        digits = (codes.unsqueeze(1) // weights) % (K + 1)
        order = torch.argsort((digits > 0).sum(dim=1), stable=True)
        lookup = torch.empty_like(order)
        lookup[order] = torch.arange(len(order), device=self.device)
        self._lookup = lookup
        return digits[order] - 1

    def index(self, states: Tensor) -> Tensor:
        if self._lookup is None:
            self.enumerate()
        assert self._lookup is not None
        return self._lookup[self.code(states)]


class PrependAppendMDP(SequenceMDP):
    """Grow a left-aligned word at either end; see the module docstring."""

    name = "prepend_append"

    def __init__(self, length: int, n_symbols: int, device: torch.device) -> None:
        super().__init__(length, n_symbols, device)
        self.n_actions = 2 * n_symbols + 1
        self.n_backward_actions = 2
        self.n_states = sum(n_symbols**i for i in range(length + 1))

    def malformed(self, states: Tensor) -> Tensor:
        """Rows with a symbol after an empty slot (words are left-aligned)."""
        filled = states >= 0
        return (filled[:, 1:] & ~filled[:, :-1]).any(dim=1)

    def forward_mask(self, states: Tensor) -> Tensor:
        full = (states >= 0).all(dim=1, keepdim=True)
        return torch.cat([(~full).expand(-1, 2 * self.n_symbols), full], dim=1)

    def backward_mask(self, states: Tensor) -> Tensor:
        return (states[:, :1] >= 0).expand(-1, 2).clone()

    def step(self, states: Tensor, actions: Tensor) -> Tensor:
        K, L = self.n_symbols, self.length
        symbol = (actions % K).unsqueeze(1)
        appended = states.scatter(1, self.lengths(states).clamp(max=L - 1).unsqueeze(1), symbol)
        prepended = torch.cat([symbol, states[:, :-1]], dim=1)
        return torch.where((actions < K).unsqueeze(1), appended, prepended)

    def backward_step(self, states: Tensor, actions: Tensor) -> Tensor:
        last = (self.lengths(states) - 1).clamp(min=0).unsqueeze(1)
        no_last = states.scatter(1, last, -1)
        no_first = torch.cat([states[:, 1:], torch.full_like(states[:, :1], -1)], dim=1)
        return torch.where((actions == 0).unsqueeze(1), no_last, no_first)

    def backward_action(self, states: Tensor, actions: Tensor) -> Tensor:
        return (actions >= self.n_symbols).long()

    def forward_action(self, states: Tensor, actions: Tensor) -> Tensor:
        last = (self.lengths(states) - 1).clamp(min=0).unsqueeze(1)
        last_symbol = states.gather(1, last).squeeze(1)
        return torch.where(actions == 0, last_symbol, states[:, 0] + self.n_symbols)

    def enumerate(self) -> Tensor:
        K, L = self.n_symbols, self.length
        blocks = []
        for n in range(L + 1):
            idx = torch.arange(K**n, device=self.device)
            weights = K ** torch.arange(n - 1, -1, -1, device=self.device)
            word = (idx.unsqueeze(1) // weights) % K
            pad = torch.full((K**n, L - n), -1, dtype=torch.long, device=self.device)
            blocks.append(torch.cat([word, pad], dim=1))
        return torch.cat(blocks)

    def index(self, states: Tensor) -> Tensor:
        """Vectorised: the offset of the level of n filled slots plus the word's value."""
        K, L = self.n_symbols, self.length
        n = self.lengths(states)
        full_code = (states.clamp(min=0) * self.place_values).sum(dim=1)
        pow_k = K ** torch.arange(L + 1, device=states.device)
        offsets = torch.cumsum(torch.cat([pow_k.new_zeros(1), pow_k[:-1]]), dim=0)
        return offsets[n] + full_code // pow_k[L - n]


SEQUENCE_MDPS: dict[str, type[SequenceMDP]] = {"fill": FillMDP, "prepend_append": PrependAppendMDP}
"""The generation MDPs by their ``mdp=`` name."""
