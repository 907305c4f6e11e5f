"""Generic fixed-length sequence design: the base of BitSequence, TFBind8 and the other string tasks.

An object is a sequence x = (x_0, …, x_{L−1}) of L symbols from an alphabet {0, …, K−1}. States are
long tensors ``[B, L]`` with −1 marking an empty slot. Two generation MDPs are offered (``mdp=``),
each its own class in :mod:`gfn_envs.tasks.sequence_mdp`: ``"fill"`` (fill any empty slot, the
paper's ``BioSeqEnv``; (K+1)^L states) and ``"prepend_append"`` (grow a contiguous word at either
end, ``BioSeqPendEnv``; Σ_{i ≤ L} K^i states). The task holds the chosen one as
:attr:`SequenceTask.generation` and delegates masks, steps and the state order to it.

Observations (both MDPs) are K-hot: L blocks of K, the block of an empty slot all zero
(``obs_dim = K·L``). For prepend/append the blocks follow the left-aligned word.

Valid states (:meth:`SequenceTask.validate_states`): symbols in [−1, K) and, for prepend/append,
a left-aligned word; tasks with infeasible sequences (Ehrlich) refuse those too.

Rewards
-------
A subclass gives R(x) for *full* sequences in one of two ways:

* ``reward_table=``: a float tensor of the K^L rewards (R, not log R, all > 0) in lexicographic
  order, i.e. indexed by the big-endian base-K value ``Σ_i x_i K^{L−1−i}`` (x_0 most significant,
  :meth:`SequenceTask.sequence_index`); or
* overriding :meth:`SequenceTask.sequence_log_reward`, a batched callable for spaces too large for a
  table (an oracle). :attr:`SequenceTask.reward_table` then evaluates it over all K^L sequences on
  first use (only for spaces up to ``max_enumerable_states``).

The paper's oracle transform is :func:`reward_transform`.

Enumeration
-----------
When the state count is at most ``max_enumerable_states`` (5·10^6 by default) the task is
enumerable. ``all_states()`` is sorted by the number of filled slots (a topological order), and
within a level by the big-endian value of the sequence, so :meth:`terminal_states` is the K^L full
sequences in lexicographic order and :meth:`true_distribution`, the exact DP of
:mod:`gfn_envs.exact` and :attr:`reward_table` line up index for index.

Modes and metrics
-----------------
Modes are a fixed set of sequences given by the subclass (:meth:`SequenceTask.set_modes`, e.g. the
top 0.5 % of TFBind8, chosen with :func:`top_k_indices`) or a threshold rule (override
:meth:`SequenceTask.is_mode`). The metrics of samplers on sequence tasks (accuracy, exact metrics,
top-k reward, diversity) live in :mod:`gfn_envs.metrics.sequences`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from gfn_envs.task import Task
from gfn_envs.tasks.sequence_guide import SubstructureGuide
from gfn_envs.tasks.sequence_mdp import SEQUENCE_MDPS

MDPS = tuple(SEQUENCE_MDPS)


def reward_transform(
    y: Tensor, r_min: float = 1e-3, alpha: float = 3.0, r_max: float = 10.0
) -> Tensor:
    """The paper's oracle transform (section 3.2): y ← max(y, R_min); y ← y^α; y ← y·R_max/max(y).

    Args:
        y: raw scores, expected in [0, 1] (e.g. min-max normalised), any shape.
        r_min: floor applied before the exponent (≥ 0; 0 means no floor).
        alpha: exponent (> 0).
        r_max: value of the largest reward after the transform (> 0).

    Returns:
        float64 rewards in (0, r_max] when ``r_min > 0``.
    """
    if not (isinstance(r_min, (int, float)) and math.isfinite(r_min) and r_min >= 0):
        raise ValueError(f"r_min must be a finite number >= 0, got {r_min!r}")
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
    if not (isinstance(r_max, (int, float)) and math.isfinite(r_max) and r_max > 0):
        raise ValueError(f"r_max must be a finite number > 0, got {r_max!r}")
    y = torch.as_tensor(y, dtype=torch.float64).clamp(min=r_min)
    if bool((y < 0).any()):
        raise ValueError("y must be >= 0 after the R_min floor (normalise the scores first)")
    y = y.pow(alpha)
    top = y.max()
    if not bool(top > 0):
        raise ValueError("every transformed score is 0; use r_min > 0")
    return y * (r_max / top)


def top_k_indices(rewards: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` largest rewards (ties broken by the lower index), sorted ascending."""
    rewards = torch.as_tensor(rewards)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(rewards):
        raise ValueError(f"k must be an integer in [1, {len(rewards)}], got {k!r}")
    order = torch.argsort(rewards, descending=True, stable=True)
    return order[:k].sort().values


class SequenceTask(Task):
    """Sequences of ``length`` symbols over ``n_symbols`` letters; see the module docstring.

    Args:
        length: L ≥ 1.
        n_symbols: K ≥ 2.
        mdp: ``"fill"`` or ``"prepend_append"``.
        reward_table: optional float ``[K^L]`` rewards R (> 0) in lexicographic order; without it
            the subclass must override :meth:`sequence_log_reward`.
        alphabet: optional string of K distinct characters, for :meth:`to_strings` and
            :meth:`from_strings`.
        device: torch device of every tensor the task returns.

    Attributes:
        length, n_symbols, mdp, alphabet, max_enumerable_states.
        generation: the :class:`~gfn_envs.tasks.sequence_mdp.SequenceMDP` named by ``mdp``.
    """

    max_enumerable_states: int = 5_000_000

    def __init__(
        self,
        length: int,
        n_symbols: int,
        mdp: str = "fill",
        reward_table: Tensor | None = None,
        alphabet: str | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__(device)
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise ValueError(f"length must be an integer >= 1, got {length!r}")
        if isinstance(n_symbols, bool) or not isinstance(n_symbols, int) or n_symbols < 2:
            raise ValueError(f"n_symbols must be an integer >= 2, got {n_symbols!r}")
        if mdp not in MDPS:
            raise ValueError(f"mdp must be one of {MDPS}, got {mdp!r}")
        if alphabet is not None and (
            not isinstance(alphabet, str)
            or len(alphabet) != n_symbols
            or len(set(alphabet)) != n_symbols
        ):
            raise ValueError(
                f"alphabet must be a string of {n_symbols} distinct characters, got {alphabet!r}"
            )
        self.length, self.n_symbols, self.mdp, self.alphabet = length, n_symbols, mdp, alphabet
        L, K = length, n_symbols
        self.state_shape = (L,)
        self.obs_dim = K * L
        self.max_length = L + 1
        self.generation = SEQUENCE_MDPS[mdp](L, K, self.device)
        self.n_actions = self.generation.n_actions
        self.n_backward_actions = self.generation.n_backward_actions
        self.n_sequences = K**L
        self._symbols = torch.arange(K, device=self.device)
        self._rows_cache: Tensor | None = None
        self._mode_index: Tensor | None = None
        self._reward_table: Tensor | None = None
        self._log_reward_table: Tensor | None = None
        if reward_table is not None:
            table = torch.as_tensor(reward_table, dtype=torch.float64, device=self.device)
            if table.shape != (self.n_sequences,):
                raise ValueError(
                    f"reward_table must have shape [{self.n_sequences}] (K^L), "
                    f"got {list(table.shape)}"
                )
            if not bool(torch.isfinite(table).all()) or bool((table <= 0).any()):
                raise ValueError("reward_table must hold finite rewards R > 0")
            self._reward_table = table
            self._log_reward_table = table.log()

    # ------------------------------------------------------------------ helpers
    def sequence_index(self, seqs: Tensor) -> Tensor:
        """Long ``[B]``: lexicographic index Σ_i x_i K^{L−1−i} of full sequences."""
        return (seqs.to(torch.long) * self.generation.place_values).sum(dim=1)

    def sequences_from_index(self, index: Tensor) -> Tensor:
        """Long ``[B, L]``: the full sequences with lexicographic ``index`` (inverse of
        :meth:`sequence_index`)."""
        index = torch.as_tensor(index, dtype=torch.long, device=self.device)
        return (index.unsqueeze(1) // self.generation.place_values) % self.n_symbols

    def filled(self, states: Tensor) -> Tensor:
        """Bool ``[B, L]``: which slots hold a symbol."""
        return states >= 0

    def lengths(self, states: Tensor) -> Tensor:
        """Long ``[B]``: number of filled slots."""
        return (states >= 0).sum(dim=1)

    def to_strings(self, seqs: Tensor) -> list[str]:
        """Full or partial sequences as strings over :attr:`alphabet` (``"."`` for empty slots)."""
        if self.alphabet is None:
            raise ValueError(f"{type(self).__name__} has no alphabet")
        chars = self.alphabet + "."
        return ["".join(chars[int(v)] for v in row) for row in torch.as_tensor(seqs).tolist()]

    def from_strings(self, strings: list[str]) -> Tensor:
        """Long ``[B, L]`` from strings of length L over :attr:`alphabet` (``"."`` = empty)."""
        if self.alphabet is None:
            raise ValueError(f"{type(self).__name__} has no alphabet")
        lookup = {c: i for i, c in enumerate(self.alphabet)} | {".": -1}
        rows = []
        for s in strings:
            if len(s) != self.length or any(c not in lookup for c in s):
                raise ValueError(
                    f"strings must have length {self.length} over {self.alphabet!r} or '.', got {s!r}"
                )
            rows.append([lookup[c] for c in s])
        return torch.tensor(rows, dtype=torch.long, device=self.device).reshape(-1, self.length)

    def validate_states(self, states: Any, name: str = "states") -> Tensor:
        """:meth:`Task.validate_states`, plus: every entry is a symbol in [0, K) or −1 (empty), and
        the pattern of empty slots is a state of the MDP (prepend/append: a left-aligned word)."""
        states = super().validate_states(states, name)
        outside = ((states < -1) | (states >= self.n_symbols)).any(dim=1)
        if bool(outside.any()):
            raise ValueError(
                f"{name} must hold symbols in [0, {self.n_symbols - 1}] or -1 (empty), got "
                f"{states[outside][0].tolist()}"
            )
        malformed = self.generation.malformed(states)
        if bool(malformed.any()):
            raise ValueError(
                f"{name} must be left-aligned words for mdp='{self.mdp}' (no symbol after an empty "
                f"slot), got {states[malformed][0].tolist()}"
            )
        return states

    # --------------------------------------------------------------- structure
    def s0(self, batch_size: int) -> Tensor:
        return torch.full((batch_size, self.length), -1, dtype=torch.long, device=self.device)

    def is_terminal(self, states: Tensor) -> Tensor:
        return (states >= 0).all(dim=1)

    def forward_mask(self, states: Tensor) -> Tensor:
        return self.generation.forward_mask(states)

    def backward_mask(self, states: Tensor) -> Tensor:
        return self.generation.backward_mask(states)

    def step(self, states: Tensor, actions: Tensor) -> Tensor:
        return self.generation.step(states, actions)

    def backward_step(self, states: Tensor, actions: Tensor) -> Tensor:
        return self.generation.backward_step(states, actions)

    def backward_action(self, states: Tensor, actions: Tensor) -> Tensor:
        return self.generation.backward_action(states, actions)

    def forward_action(self, states: Tensor, actions: Tensor) -> Tensor:
        return self.generation.forward_action(states, actions)

    def encode(self, states: Tensor) -> Tensor:
        return (states.unsqueeze(2) == self._symbols).flatten(1).float()

    def sample_terminal(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` full sequences drawn uniformly at random."""
        return torch.randint(
            self.n_symbols, (n, self.length), generator=generator, device=self.device
        )

    # ----------------------------------------------------------------- rewards
    def sequence_log_reward(self, seqs: Tensor) -> Tensor:
        """Float64 ``[B]``: log R(x) of full sequences ``[B, L]``. Override for oracle tasks."""
        if self._log_reward_table is None:
            raise NotImplementedError(
                f"{type(self).__name__} must pass reward_table or override sequence_log_reward"
            )
        return self._log_reward_table[self.sequence_index(seqs)]

    def log_reward(self, states: Tensor) -> Tensor:
        if bool((states < 0).any()):
            raise ValueError("log_reward is defined on full sequences only (no -1 slots)")
        return self.sequence_log_reward(states).float()

    @property
    def reward_table(self) -> Tensor:
        """Float64 ``[K^L]``: R of every sequence in lexicographic order (computed once)."""
        if self._reward_table is None:
            if self.n_sequences > self.max_enumerable_states:
                raise ValueError(
                    f"K^L = {self.n_sequences} sequences is too many for a reward table "
                    f"(max_enumerable_states = {self.max_enumerable_states})"
                )
            chunks = [
                self.sequence_log_reward(self.sequences_from_index(torch.arange(lo, hi)))
                for lo, hi in _chunks(self.n_sequences, 1 << 16)
            ]
            self._log_reward_table = torch.cat(chunks).to(torch.float64)
            self._reward_table = self._log_reward_table.exp()
        return self._reward_table

    # ------------------------------------------------------------------- modes
    def set_modes(self, index: Tensor) -> None:
        """Declare the mode set by lexicographic indices (long ``[M]``)."""
        index = torch.as_tensor(index, dtype=torch.long, device=self.device).flatten()
        if len(index) == 0 or bool((index < 0).any() | (index >= self.n_sequences).any()):
            raise ValueError(f"mode indices must be a non-empty set in [0, {self.n_sequences})")
        self._mode_index = torch.unique(index)

    def mode_index(self) -> Tensor:
        """Long ``[M]``: sorted lexicographic indices of the modes."""
        if self._mode_index is None:
            raise NotImplementedError(f"{type(self).__name__} declares no mode set")
        return self._mode_index

    def modes(self) -> Tensor:
        """Bool ``[K^L]`` over :meth:`terminal_states` (lexicographic): the declared mode set, or the
        maximal-reward objects when none is declared."""
        if self._mode_index is None:
            return super().modes()
        mask = torch.zeros(self.n_sequences, dtype=torch.bool, device=self.device)
        mask[self._mode_index] = True
        return mask

    @property
    def n_modes(self) -> int:
        """Number of modes M."""
        return len(self.mode_index())

    def is_mode(self, seqs: Tensor) -> Tensor:
        """Bool ``[B]``: which full sequences are modes."""
        modes = self.mode_index()
        index = self.sequence_index(seqs)
        pos = torch.searchsorted(modes, index).clamp(max=len(modes) - 1)
        return modes[pos] == index

    def modes_found(self, seqs: Tensor) -> int:
        """Number of distinct modes among the full sequences ``seqs`` ``[B, L]``."""
        seqs = torch.as_tensor(seqs, device=self.device)
        if len(seqs) == 0:
            return 0
        return int(self.is_mode(torch.unique(seqs, dim=0)).sum())

    def default_guide(self) -> SubstructureGuide:
        """The replay-buffer substructure guide of the paper (section 2.7)."""
        return SubstructureGuide(self)

    # ------------------------------------------------------------- enumeration
    @property
    def n_states(self) -> int:
        """Number of states of the MDP: (K+1)^L (fill) or Σ_{i≤L} K^i (prepend/append)."""
        return self.generation.n_states

    @property
    def enumerable(self) -> bool:
        return self.n_states <= self.max_enumerable_states

    def _check_enumerable(self) -> None:
        if not self.enumerable:
            raise NotImplementedError(
                f"{type(self).__name__} has {self.n_states} states, more than "
                f"max_enumerable_states = {self.max_enumerable_states}"
            )

    def all_states(self) -> Tensor:
        """Every state, by number of filled slots, then lexicographically (see module docstring)."""
        self._check_enumerable()
        if self._rows_cache is None:
            self._rows_cache = self.generation.enumerate()
        return self._rows_cache

    def state_index(self, states: Tensor) -> Tensor:
        self._check_enumerable()
        return self.generation.index(states)

    def terminal_states(self) -> Tensor:
        """The K^L full sequences in lexicographic order (the last level of :meth:`all_states`)."""
        return self.all_states()[-self.n_sequences :]


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(lo, min(lo + size, n)) for lo in range(0, n, size)]
