"""Bit sequences (Malkin et al. 2022, "Trajectory balance"): reward by distance to a hidden mode set.

An object is a bit string of length n, generated as L = n/k words of k bits: the sequence task of
:mod:`gfn_envs.tasks.sequence` with K = 2^k symbols (word w stands for its k bits, most significant
first), in either MDP (``mdp="fill"`` or ``"prepend_append"``).

Reward: log R(x) = −β · min_{m ∈ M} d_H(x, m), with d_H the Hamming distance in *bits*. The mode set
M holds ``n_modes`` distinct bit strings drawn with ``seed``: when n is a multiple of 8 each mode is
a concatenation of n/8 blocks drawn uniformly from Malkin et al.'s
H = {00000000, 11111111, 11110000, 00001111, 00111100}; otherwise its bits are uniform.

Metrics: for n ≤ 22 (2^n ≤ 5·10^6 sequences) and a small enough state space the task is enumerable
and every exact metric of :class:`~gfn_envs.tasks.sequence.SequenceTask` applies, with M as the mode
set. For larger n, :meth:`BitSequence.modes_found` counts the modes m ∈ M that some sample lies
within ``mode_radius`` bits of (Malkin et al.'s mode-discovery metric).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gfn_envs.tasks.sequence import SequenceTask

MALKIN_BLOCKS = ("00000000", "11111111", "11110000", "00001111", "00111100")


class BitSequence(SequenceTask):
    """Bit strings of length ``n`` built from ``k``-bit words; see the module docstring.

    Args:
        n: number of bits (≥ 1, a multiple of ``k``).
        k: bits per word (1 ≤ k ≤ 8); K = 2^k symbols, L = n/k positions.
        n_modes: size of the mode set M (≥ 1, at most the number of distinct strings the
            construction can produce); default min(8, that number).
        beta: β > 0 in log R = −β·d.
        mode_radius: Hamming radius (bits, ≥ 0) within which a sample finds a mode.
        seed: seed of the mode set.
        mdp: ``"fill"`` or ``"prepend_append"``.
        device: torch device.
    """

    def __init__(
        self,
        n: int = 16,
        k: int = 4,
        n_modes: int | None = None,
        beta: float = 1.0,
        mode_radius: int = 0,
        seed: int = 0,
        mdp: str = "fill",
        device: str | torch.device = "cpu",
    ) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 8 or n % k:
            raise ValueError(f"k must be an integer in [1, 8] that divides n={n}, got {k!r}")
        if not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta <= 0:
            raise ValueError(f"beta must be a finite number > 0, got {beta!r}")
        if isinstance(mode_radius, bool) or not isinstance(mode_radius, int) or mode_radius < 0:
            raise ValueError(f"mode_radius must be an integer >= 0, got {mode_radius!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        n_possible = len(MALKIN_BLOCKS) ** (n // 8) if n % 8 == 0 else 2**n
        if n_modes is None:
            n_modes = min(8, n_possible)
        if (
            isinstance(n_modes, bool)
            or not isinstance(n_modes, int)
            or not 1 <= n_modes <= min(n_possible, 10_000)
        ):
            raise ValueError(
                f"n_modes must be an integer in [1, {min(n_possible, 10_000)}] for n={n}, "
                f"got {n_modes!r}"
            )
        super().__init__(length=n // k, n_symbols=2**k, mdp=mdp, device=device)
        self.n, self.k, self.beta, self.mode_radius, self.seed = (
            n,
            k,
            float(beta),
            mode_radius,
            seed,
        )
        self._shifts = torch.arange(k - 1, -1, -1, device=self.device)
        self.mode_bits = self._make_modes(n_modes, seed)
        if self.n_sequences <= self.max_enumerable_states:
            self.set_modes(self.sequence_index(self.bits_to_words(self.mode_bits)))

    def _make_modes(self, n_modes: int, seed: int) -> Tensor:
        """``n_modes`` distinct bit strings ``[M, n]``: rows are drawn in order and duplicates are
        redrawn, so the set depends on ``seed`` only."""
        generator = torch.Generator().manual_seed(seed)
        blocks = torch.tensor([[int(c) for c in b] for b in MALKIN_BLOCKS], dtype=torch.long)
        rows: list[Tensor] = []
        seen: set[tuple[int, ...]] = set()
        while len(rows) < n_modes:
            if self.n % 8 == 0:
                digits = torch.randint(len(MALKIN_BLOCKS), (self.n // 8,), generator=generator)
                row = blocks[digits].flatten()
            else:
                row = torch.randint(2, (self.n,), generator=generator)
            key = tuple(row.tolist())
            if key not in seen:
                seen.add(key)
                rows.append(row)
        return torch.stack(rows).to(self.device)

    def words_to_bits(self, seqs: Tensor) -> Tensor:
        """Long ``[B, n]``: the bits of full word sequences ``[B, L]`` (most significant first)."""
        return ((seqs.unsqueeze(2) >> self._shifts) & 1).flatten(1)

    def bits_to_words(self, bits: Tensor) -> Tensor:
        """Long ``[B, L]``: words of bit strings ``[B, n]``."""
        return (bits.view(len(bits), self.length, self.k) << self._shifts).sum(dim=2)

    def min_distance(self, seqs: Tensor) -> Tensor:
        """Long ``[B]``: min_{m∈M} Hamming distance (bits) of full sequences to the mode set."""
        return self.mode_distances(seqs).min(dim=1).values

    def mode_distances(self, seqs: Tensor) -> Tensor:
        """Long ``[B, M]``: Hamming distance (bits) of each sequence to each mode,
        |x| + |m| − 2·x·m computed as one matrix product."""
        x = self.words_to_bits(seqs).double()
        m = self.mode_bits.double()
        d = x.sum(1, keepdim=True) + m.sum(1) - 2.0 * x @ m.T
        return d.round().long()

    def sequence_log_reward(self, seqs: Tensor) -> Tensor:
        return -self.beta * self.min_distance(seqs).double()

    def modes_found(self, seqs: Tensor) -> int:
        """Number of modes m ∈ M with some sequence of ``seqs`` within ``mode_radius`` bits."""
        seqs = torch.as_tensor(seqs, device=self.device)
        if len(seqs) == 0:
            return 0
        found = torch.zeros(len(self.mode_bits), dtype=torch.bool, device=self.device)
        for start in range(0, len(seqs), 4096):
            close = self.mode_distances(seqs[start : start + 4096]) <= self.mode_radius
            found |= close.any(dim=0)
        return int(found.sum())

    def is_mode(self, seqs: Tensor) -> Tensor:
        """Bool ``[B]``: sequences within ``mode_radius`` bits of a mode."""
        return self.min_distance(seqs) <= self.mode_radius
