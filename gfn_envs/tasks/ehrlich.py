"""Ehrlich functions (Stanton et al. 2024, "Closed-form test functions for biophysical sequence
design"), implemented natively in numpy/torch.

An Ehrlich function over sequences x ∈ V^L (|V| = v states) has three parts:

* **A feasibility model**: a discrete Markov process (DMP) with transition matrix A (v × v) in
  which some transitions are *banned* (A_ij = 0). x is feasible iff no consecutive pair
  (x_t, x_{t+1}) is banned. Infeasible sequences have f = −∞ in the paper; here they are unreachable,
  because the forward masks never allow a banned pair (see :class:`Ehrlich`).
* **c motifs** a^(i) ∈ V^k with **spacings** s^(i) ∈ ℕ^k (s_1 = 0 < s_2 < … < s_k < L // c).
* **Quantization** q (1 ≤ q ≤ k). With h_q(x, a, s) = max_l ⌊(Σ_j 1[x_{l+s_j} = a_j]) · q / k⌋ / q,
  the largest quantized fraction of the motif present at some location l,

      f(x) = Π_{i=1..c} h_q(x, a^(i), s^(i))   ∈ {0, 1/q^c, …, 1} for feasible x.

Seeded construction (our own, *not* bit-compatible with pytorch-holo's RNG calls), all from
``numpy.random.default_rng(seed)``:

1. A random cyclic order π of the states; the transitions π_j → π_{j+1} and every self-transition
   i → i are always allowed, so the DMP is ergodic and any gap can be bridged by repeating a state.
   Of the other v − 2 transitions out of each state, ``round(banned_fraction · (v − 2))`` random ones
   are banned. Allowed transitions get weights U(0.5, 1.5), normalised per row.
2. One DMP chain of length c·k from a uniform first state, cut into the c motifs, so every motif and
   every junction motif i → motif i+1 is feasible.
3. Spacings per motif: 0 followed by k − 1 distinct sorted offsets drawn from 1 … L//c − 1.

These choices guarantee a feasible optimum with f = 1 (:meth:`EhrlichFunction.optimal_solution`):
motif i is written at offset i·(L//c) and every gap repeats the previous symbol.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gfn_envs.tasks.sequence import SequenceTask


def _int_at_least(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


class EhrlichFunction:
    """The closed-form Ehrlich oracle (module docstring). All tensors live on CPU.

    Attributes:
        transition_matrix: float64 ``[v, v]``, rows sum to 1, 0 where banned.
        allowed: bool ``[v, v]``, the feasible transitions.
        motifs: long ``[c, k]``; spacings: long ``[c, k]``.
    """

    def __init__(
        self,
        n_states: int = 4,
        length: int = 8,
        n_motifs: int = 2,
        motif_length: int = 4,
        quantization: int | None = None,
        banned_fraction: float = 0.5,
        seed: int = 0,
    ) -> None:
        v = _int_at_least("n_states", n_states, 2)
        L = _int_at_least("length", length, 1)
        c = _int_at_least("n_motifs", n_motifs, 1)
        k = _int_at_least("motif_length", motif_length, 1)
        q = k if quantization is None else quantization
        if isinstance(q, bool) or not isinstance(q, int) or not 1 <= q <= k:
            raise ValueError(f"quantization must be an integer in 1..motif_length={k}, got {q!r}")
        if c * k > L:
            raise ValueError(f"n_motifs * motif_length must be <= length, got {c} * {k} > {L}")
        if not isinstance(banned_fraction, (int, float)) or not 0 <= banned_fraction <= 1:
            raise ValueError(f"banned_fraction must be a number in [0, 1], got {banned_fraction!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.n_states, self.length, self.n_motifs, self.motif_length = v, L, c, k
        self.quantization = q
        rng = np.random.default_rng(seed)

        order = rng.permutation(v)
        allowed = np.eye(v, dtype=bool)
        allowed[order, np.roll(order, -1)] = True
        n_ban = round(banned_fraction * max(v - 2, 0))
        for i in range(v):
            candidates = np.flatnonzero(~allowed[i])
            keep = rng.permutation(candidates)[n_ban:]
            allowed[i, keep] = True
        weights = np.where(allowed, rng.uniform(0.5, 1.5, size=(v, v)), 0.0)
        matrix = weights / weights.sum(axis=1, keepdims=True)

        chain = np.empty(c * k, dtype=np.int64)
        chain[0] = rng.integers(v)
        for t in range(1, c * k):
            chain[t] = rng.choice(v, p=matrix[chain[t - 1]])
        window = L // c
        spacings = np.zeros((c, k), dtype=np.int64)
        for i in range(c):
            spacings[i, 1:] = np.sort(rng.choice(np.arange(1, window), k - 1, replace=False))

        self.allowed = torch.from_numpy(allowed)
        self.transition_matrix = torch.from_numpy(matrix)
        self.motifs = torch.from_numpy(chain.reshape(c, k))
        self.spacings = torch.from_numpy(spacings)
        # reach[d][i, j]: a feasible path of exactly d steps leads from i to j.
        reach = [torch.eye(v, dtype=torch.bool)]
        step = self.allowed.long()
        for _ in range(L):
            reach.append((reach[-1].long() @ step) > 0)
        self.reach = torch.stack(reach)
        # locations[i]: [n_loc_i, k] positions read by motif i at each location l.
        self._locations = [
            torch.arange(L - int(s[-1])).unsqueeze(1) + s.unsqueeze(0) for s in self.spacings
        ]

    def feasible(self, seqs: Tensor) -> Tensor:
        """Bool ``[B]``: no banned transition between consecutive symbols of full sequences."""
        seqs = torch.as_tensor(seqs).long().cpu()
        return self.allowed[seqs[:, :-1], seqs[:, 1:]].all(dim=1)

    def motif_presence(self, seqs: Tensor) -> Tensor:
        """Float64 ``[B, c]``: h_q(x, a^(i), s^(i)) for each motif i."""
        seqs = torch.as_tensor(seqs).long().cpu()
        k, q = self.motif_length, self.quantization
        out = []
        for motif, positions in zip(self.motifs, self._locations, strict=True):
            matches = (seqs[:, positions] == motif).sum(dim=2).max(dim=1).values
            out.append(torch.div(matches * q, k, rounding_mode="floor").double() / q)
        return torch.stack(out, dim=1)

    def __call__(self, seqs: Tensor) -> Tensor:
        """f(x), float64 ``[B]``: the product of motif presences, −inf where x is infeasible."""
        f = self.motif_presence(seqs).prod(dim=1)
        return torch.where(self.feasible(seqs), f, torch.full_like(f, -math.inf))

    def optimal_solution(self) -> Tensor:
        """A feasible sequence with f = 1, long ``[L]`` (module docstring)."""
        x = torch.full((self.length,), -1, dtype=torch.long)
        window = self.length // self.n_motifs
        for i in range(self.n_motifs):
            x[i * window + self.spacings[i]] = self.motifs[i]
        for t in range(1, self.length):
            if x[t] < 0:
                x[t] = x[t - 1]
        return x

    def sample_feasible(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` feasible sequences drawn from the DMP (uniform first state), long ``[n, L]``."""
        x = torch.empty(n, self.length, dtype=torch.long)
        x[:, 0] = torch.randint(self.n_states, (n,), generator=generator)
        for t in range(1, self.length):
            x[:, t] = torch.multinomial(
                self.transition_matrix[x[:, t - 1]], 1, generator=generator
            )[:, 0]
        return x


class Ehrlich(SequenceTask):
    """Design task on an :class:`EhrlichFunction`, with the banned transitions masked out.

    Forward masks only allow moves that keep the sequence completable to a feasible one:

    * ``"prepend_append"``: append a after the last symbol u iff A_ua > 0, prepend a before the
      first symbol w iff A_aw > 0.
    * ``"fill"``: write a at an empty position p iff, with u the nearest filled symbol d_l slots to
      the left and w the nearest d_r slots to the right, a feasible path of d_l steps leads from u
      to a and one of d_r steps from a to w (``reach``); a missing neighbour imposes nothing. Every
      reachable state then has a feasible completion, so there are no dead ends.

    Every reachable terminal object is feasible; the states of enumerable instances are the
    reachable ones only. Reward: R(x) = R_max · max(f(x), R_min)^α (f's maximum is 1), defaults
    α = 3, R_min = 10^−3, R_max = 10. Modes: the sequences with f = 1.

    Args:
        n_states, length, n_motifs, motif_length, quantization, banned_fraction, seed: the
            :class:`EhrlichFunction`.
        mdp: ``"fill"`` or ``"prepend_append"``.
        alpha, r_min, r_max: the reward transform above.
        device: torch device.
    """

    def __init__(
        self,
        n_states: int = 4,
        length: int = 8,
        n_motifs: int = 2,
        motif_length: int = 4,
        quantization: int | None = None,
        banned_fraction: float = 0.5,
        seed: int = 0,
        mdp: str = "fill",
        alpha: float = 3.0,
        r_min: float = 1e-3,
        r_max: float = 10.0,
        device: str | torch.device = "cpu",
    ) -> None:
        for name, value in (("alpha", alpha), ("r_min", r_min), ("r_max", r_max)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        self.function = EhrlichFunction(
            n_states, length, n_motifs, motif_length, quantization, banned_fraction, seed
        )
        super().__init__(length, n_states, mdp=mdp, device=device)
        self.alpha, self.r_min, self.r_max = float(alpha), float(r_min), float(r_max)
        self._allowed = self.function.allowed.to(self.device)
        self._reach = self.function.reach.to(self.device)
        self._reachable_states: Tensor | None = None
        self._compact: Tensor | None = None
        pend = self.mdp == "prepend_append"  # the feasibility rules of each generation MDP
        self._feasible = self._feasible_pend if pend else self._feasible_fill
        self._completable = self._completable_pend if pend else self._completable_fill

    # --------------------------------------------------------------- masks
    def forward_mask(self, states: Tensor) -> Tensor:
        return super().forward_mask(states) & self._feasible(states)

    def _feasible_pend(self, states: Tensor) -> Tensor:
        """Prepend/append: append a after the last symbol u iff A_ua > 0, prepend a before the
        first symbol w iff A_aw > 0 (anything at the empty word)."""
        n = self.lengths(states)
        nonempty = (n > 0).unsqueeze(1)
        last = states.gather(1, (n - 1).clamp(min=0).unsqueeze(1)).squeeze(1).clamp(min=0)
        first = states[:, 0].clamp(min=0)
        ok_append = ~nonempty | self._allowed[last]
        ok_prepend = ~nonempty | self._allowed[:, first].T
        return torch.cat([ok_append, ok_prepend, torch.ones_like(ok_append[:, :1])], dim=1)

    def _feasible_fill(self, states: Tensor) -> Tensor:
        """Fill: write a at position p iff feasible paths bridge the nearest filled neighbours."""
        K, L = self.n_symbols, self.length
        positions = torch.arange(L, device=states.device).expand_as(states)
        filled = states >= 0
        left_pos = torch.where(filled, positions, -1).cummax(dim=1).values
        left = torch.cat([torch.full_like(left_pos[:, :1], -1), left_pos[:, :-1]], dim=1)
        right_pos = torch.where(filled, positions, L).flip(1).cummin(dim=1).values.flip(1)
        right = torch.cat([right_pos[:, 1:], torch.full_like(right_pos[:, :1], L)], dim=1)
        left_sym = states.gather(1, left.clamp(min=0)).clamp(min=0)
        right_sym = states.gather(1, right.clamp(max=L - 1)).clamp(min=0)
        d_left = (positions - left).clamp(max=L)
        d_right = (right - positions).clamp(max=L)
        ok_left = (left < 0).unsqueeze(2) | self._reach[d_left, left_sym]
        ok_right = (right >= L).unsqueeze(2) | self._reach.transpose(1, 2)[d_right, right_sym]
        ok = (ok_left & ok_right).permute(0, 2, 1).reshape(len(states), K * L)
        return torch.cat([ok, torch.ones_like(ok[:, :1])], dim=1)

    def sample_terminal(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` feasible sequences drawn from the DMP (uniform first state)."""
        return self.function.sample_feasible(n, generator).to(self.device)

    # ------------------------------------------------------------- rewards
    def fitness(self, seqs: Tensor) -> Tensor:
        """f(x), float64 ``[B]`` (−inf for infeasible sequences, which no trajectory reaches)."""
        return self.function(seqs).to(self.device)

    def sequence_log_reward(self, seqs: Tensor) -> Tensor:
        """log R(x) = log R_max + α · log max(f(x), R_min), float64 ``[B]``."""
        f = self.function.motif_presence(seqs).prod(dim=1).to(self.device)
        return self.alpha * f.clamp(min=self.r_min).log() + math.log(self.r_max)

    def is_mode(self, seqs: Tensor) -> Tensor:
        """Bool ``[B]``: f(x) = 1 (every motif fully present)."""
        return self.fitness(seqs) >= 1.0

    # ---------------------------------------------------------- enumeration
    def _completable_pend(self, states: Tensor) -> Tensor:
        """Bool ``[B]``: no banned pair inside the word (a feasible completion then exists)."""
        pairs = (states[:, :-1] >= 0) & (states[:, 1:] >= 0)
        ok = self._allowed[states[:, :-1].clamp(min=0), states[:, 1:].clamp(min=0)]
        return (ok | ~pairs).all(dim=1)

    def _completable_fill(self, states: Tensor) -> Tensor:
        """Bool ``[B]``: feasible paths bridge every gap between consecutive filled slots."""
        L = self.length
        positions = torch.arange(L, device=states.device).expand_as(states)
        filled = states >= 0
        prev_pos = torch.where(filled, positions, -1).cummax(dim=1).values
        prev = torch.cat([torch.full_like(prev_pos[:, :1], -1), prev_pos[:, :-1]], dim=1)
        prev_sym = states.gather(1, prev.clamp(min=0)).clamp(min=0)
        gap_ok = self._reach[(positions - prev).clamp(max=L), prev_sym, states.clamp(min=0)]
        return (gap_ok | ~filled | (prev < 0)).all(dim=1)

    def validate_states(self, states: Any, name: str = "states") -> Tensor:
        """:meth:`SequenceTask.validate_states`, and the state must be completable to a feasible
        sequence (so a full one must be feasible: no banned transition)."""
        states = super().validate_states(states, name)
        bad = ~self._completable(states)
        if bool(bad.any()):
            raise ValueError(
                f"{name} must be completable to a feasible sequence (no banned transition "
                f"between neighbouring symbols), got {states[bad][0].tolist()}"
            )
        return states

    def all_states(self) -> Tensor:
        """The reachable states, in the order of :meth:`SequenceTask.all_states`."""
        if self._reachable_states is None:
            states = super().all_states()
            keep = self._completable(states)
            compact = torch.full((len(states),), -1, dtype=torch.long, device=self.device)
            compact[keep] = torch.arange(int(keep.sum()), device=self.device)
            self._reachable_states, self._compact = states[keep], compact
        return self._reachable_states

    def state_index(self, states: Tensor) -> Tensor:
        self.all_states()
        assert self._compact is not None
        return self._compact[super().state_index(states)]

    def terminal_states(self) -> Tensor:
        """The feasible sequences in lexicographic order."""
        states = self.all_states()
        return states[self.is_terminal(states)]

    @property
    def reward_table(self) -> Tensor:
        """Float64 R over :meth:`terminal_states` (the feasible sequences only)."""
        return self._enumerate()["log_rewards"].exp()

    def mode_index(self) -> Tensor:
        """Long ``[M]``: positions in :meth:`terminal_states` of the sequences with f = 1."""
        return self.is_mode(self.terminal_states()).nonzero().squeeze(1)

    def modes(self) -> Tensor:
        """Bool over :meth:`terminal_states`: the sequences with f = 1."""
        return self.is_mode(self.terminal_states())

    def modes_found(self, seqs: Tensor) -> int:
        """Number of distinct sequences with f = 1 among ``seqs``."""
        seqs = torch.as_tensor(seqs, device=self.device)
        if len(seqs) == 0:
            return 0
        return int(self.is_mode(torch.unique(seqs, dim=0)).sum())
