"""RNA binding (FLEXS-style landscape, re-implemented on ViennaRNA's ``duplexfold``).

The landscape of Sinai et al. 2020 (FLEXS, "RNABinding"): design an RNA of length L over
``ACGU`` that hybridises strongly with a fixed 100-nt target T. With E(a, b) the minimum free
energy of the duplex a·b from ``RNA.duplexfold`` (kcal/mol, negative for binding),

    f(x)  = E(T, x) / norm,
    norm  = E(revcomp(T), T) · L / len(T),

so f is the binding energy of x relative to a per-nucleotide share of the perfect complement's
energy; random 14-mers score about 0.3 (0.02 … 0.75 over 10,000 of them) and the best are near 1.0.
Check values (L14_RNA1): norm = −36.414, f(``AUGGGCCGGACCCC``) = 0.5437.

The four 100-nt targets and the length-14 start sequences are facts taken from the registry in
``flexs/landscapes/rna.py`` of the ``flexs`` 0.2.8 wheel on PyPI (Apache-2.0, © the FLEXS authors);
problem ``L14_RNA<t>`` is target ``t`` with L = 14. No code from flexs is used.

Sequences are integer vectors over {0: A, 1: C, 2: G, 3: U}; a sequence's *index* is its big-endian
base-4 value (x_0 most significant), i.e. its rank in lexicographic order.

The oracle (:class:`RNABindingOracle`) is evaluated in batches, caches every value by sequence
index, and counts the distinct sequences it has sent to ViennaRNA (``oracle_calls``), which is the
budget that sequence-design benchmarks report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from gfn_envs.tasks.sequence import SequenceTask

ALPHABET = "ACGU"

RNA_TARGETS: tuple[str, ...] = (
    "GAACGAGGCACAUUCCGGCUCGCCCGGCCCAUGUGAGCAUGGGCCGGACCCCGUCCGCGCGGGGCCCCCGCGCGGACGGGGGCGAGCCGGAAUGUGCCUC",
    "GAGGCACAUUCCGGCUCGCCCCCGUCCGCGCGGGGGCCCCGCGCGGACGGGGUCCGGCCCGCGCGGGGCCCCCGCGCGGGAGCCGGAAUGUGCCUCGUUC",
    "CCGGUGAUACUGUUAGUGGUCACGGUGCAUUUAUAGCGCUAAAGUACAGUCUUCCCCUGUUGAACGGCGCCAUUGCAUACAGGGCCAGCCGCGUAACGCC",
    "UAAGAGAGCGUAAAAAUAGAGAUAUGUUCUUGGGUCAGGGCUAUGCGUACCCCAUGAGAGUAAAUCAUACCCCCAAUGGGCUUCGGCGGAAAUUCACUUA",
)
"""The four 100-nt binding targets of the FLEXS registry (targets 1–4)."""

L14_STARTS: tuple[str, ...] = (
    "AUGGGCCGGACCCC",
    "GCCCCGCCGGAAUG",
    "UCUUGGGGACUUUU",
    "GGAUAACAAUUCAU",
    "CCCAUGCGCGAUCA",
)
"""The five length-14 start sequences of the FLEXS registry (shared by all L14 problems)."""

_COMPLEMENT = str.maketrans("ACGU", "UGCA")


def _rna():  # noqa: ANN202 - the module type of an optional dependency
    try:
        import RNA
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the RNA binding task needs ViennaRNA: pip install 'gfn-gym[bio]' (PyPI viennarna)"
        ) from error
    return RNA


def reverse_complement(sequence: str) -> str:
    """The reverse complement of an RNA string (A↔U, C↔G, read backwards)."""
    return sequence.translate(_COMPLEMENT)[::-1]


def binding_norm(target: str, length: int) -> float:
    """norm = E(revcomp(T), T) · L / len(T), the energy scale of the landscape (negative)."""
    return (
        float(_rna().duplexfold(reverse_complement(target), target).energy) * length / len(target)
    )


def binding_fitness(target: str, sequences: Sequence[str], norm: float | None = None) -> np.ndarray:
    """f(x) = E(T, x) / norm for each RNA string x (float64 ``[B]``); every x must have one length."""
    if len(sequences) == 0:
        return np.zeros(0)
    lengths = {len(s) for s in sequences}
    if len(lengths) != 1:
        raise ValueError(f"sequences must all have one length, got lengths {sorted(lengths)}")
    if norm is None:
        norm = binding_norm(target, lengths.pop())
    duplexfold = _rna().duplexfold
    energies = np.fromiter((duplexfold(target, s).energy for s in sequences), float, len(sequences))
    return energies / norm


def to_strings(sequences: Tensor | np.ndarray) -> list[str]:
    """RNA strings of integer sequences ``[B, L]`` over {0: A, 1: C, 2: G, 3: U}."""
    codes = np.frombuffer(ALPHABET.encode(), dtype=np.uint8)[np.asarray(sequences)]
    width = codes.shape[1]
    return [s.decode() for s in np.ascontiguousarray(codes).view(f"S{width}").ravel()]


def from_strings(sequences: Sequence[str]) -> Tensor:
    """Integer sequences ``[B, L]`` of RNA strings (inverse of :func:`to_strings`)."""
    raw = np.frombuffer("".join(sequences).encode(), dtype=np.uint8)
    lookup = np.full(256, -1, dtype=np.int64)
    lookup[np.frombuffer(ALPHABET.encode(), dtype=np.uint8)] = np.arange(4)
    codes = lookup[raw]
    if (codes < 0).any():
        raise ValueError(f"sequences must be strings over {ALPHABET!r}")
    return torch.from_numpy(codes.reshape(len(sequences), -1))


class RNABindingOracle:
    """Batched, cached f(x) of one FLEXS target at one length.

    Values are cached by sequence index in two sorted tensors (keys, values), so a lookup is one
    ``searchsorted`` over the batch; only sequences never seen before reach ViennaRNA, each once.

    Attributes:
        oracle_calls: number of distinct sequences evaluated by ViennaRNA so far (the budget).
        queries: number of sequences asked for, cache hits and repeats included.
    """

    def __init__(self, target: int | str = 1, length: int = 14) -> None:
        if isinstance(target, bool) or not isinstance(target, (int, str)):
            raise TypeError(f"target must be 1..4 or an RNA string, got {target!r}")
        if isinstance(target, int):
            if not 1 <= target <= len(RNA_TARGETS):
                raise ValueError(f"target must be one of 1..{len(RNA_TARGETS)}, got {target}")
            target = RNA_TARGETS[target - 1]
        if not target or set(target) - set(ALPHABET):
            raise ValueError(f"target must be a non-empty string over {ALPHABET!r}")
        if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= 31:
            raise ValueError(f"length must be an integer in 1..31, got {length!r}")
        self.target, self.length = target, length
        self.norm = binding_norm(target, length)
        self._strides = 4 ** torch.arange(length - 1, -1, -1, dtype=torch.long)
        self._keys = torch.zeros(0, dtype=torch.long)
        self._values = torch.zeros(0, dtype=torch.float64)
        self.oracle_calls = 0
        self.queries = 0

    def index(self, sequences: Tensor) -> Tensor:
        """Long ``[B]``: big-endian base-4 value (lexicographic rank) of each sequence."""
        return (sequences.long().cpu() * self._strides).sum(dim=1)

    @property
    def cache_size(self) -> int:
        """Number of cached sequences (equals ``oracle_calls``)."""
        return len(self._keys)

    def _lookup(self, keys: Tensor) -> tuple[Tensor, Tensor]:
        if len(self._keys) == 0:
            return torch.zeros_like(keys, dtype=torch.bool), torch.zeros(len(keys)).double()
        pos = torch.searchsorted(self._keys, keys).clamp(max=len(self._keys) - 1)
        hit = self._keys[pos] == keys
        return hit, self._values[pos]

    def __call__(self, sequences: Tensor) -> Tensor:
        """Fitness f(x), float64 ``[B]`` on the input's device, for integer sequences ``[B, L]``."""
        sequences = torch.as_tensor(sequences)
        if sequences.dim() != 2 or sequences.shape[1] != self.length:
            raise ValueError(
                f"sequences must have shape [B, {self.length}], got {list(sequences.shape)}"
            )
        if len(sequences) and (int(sequences.min()) < 0 or int(sequences.max()) > 3):
            raise ValueError("sequences must hold symbols in 0..3 (A, C, G, U)")
        keys = self.index(sequences)
        self.queries += len(keys)
        hit, _ = self._lookup(keys)
        new = torch.unique(keys[~hit])
        if len(new):
            new_seqs = (new.unsqueeze(1) // self._strides) % 4
            values = torch.from_numpy(binding_fitness(self.target, to_strings(new_seqs), self.norm))
            keys_all = torch.cat([self._keys, new])
            order = keys_all.argsort()
            self._keys = keys_all[order]
            self._values = torch.cat([self._values, values])[order]
            self.oracle_calls += len(new)
        _, out = self._lookup(keys)
        return out.to(device=sequences.device, dtype=torch.float64)


class RNABinding(SequenceTask):
    """RNA binding design: length-L sequences over ``ACGU`` scored by :class:`RNABindingOracle`.

    Reward: the paper's transform (section 3.2) with the landscape's nominal maximum f = 1 in place
    of max_x f (which cannot be enumerated): R(x) = R_max · max(f(x), R_min)^α, so a sequence that
    binds as well as the perfect complement's per-nucleotide share gets R_max. Defaults α = 3,
    R_min = 1e−3 (f can be ≤ 0 for sequences that barely bind), R_max = 10; the best 14-mers
    (f ≈ 1.05) reach about 11.6.

    Args:
        target: FLEXS target 1–4 (problem ``L<length>_RNA<target>``) or an RNA string.
        length: L, the designed sequence length (1–31; FLEXS uses 14, 50, 100).
        mdp: ``"fill"`` or ``"prepend_append"`` (see :mod:`gfn_envs.tasks.sequence`).
        alpha, r_min, r_max: the reward transform above.
        mode_threshold: a sequence is a mode when f(x) ≥ this (default 0.8: none of 10,000
            uniformly random 14-mers reaches it on target 1, their maximum is 0.75).
        device: torch device.

    Not enumerable at L = 14 (4^14 objects, 5^14 fill states): evaluate samplers with
    :func:`gfn_envs.metrics.sequences.discovery_metrics`. Oracle calls (distinct sequences sent to ViennaRNA) are the task's
    budget: :attr:`oracle_calls`.
    """

    def __init__(
        self,
        target: int | str = 1,
        length: int = 14,
        mdp: str = "fill",
        alpha: float = 3.0,
        r_min: float = 1e-3,
        r_max: float = 10.0,
        mode_threshold: float = 0.8,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__(length, 4, mdp=mdp, alphabet=ALPHABET, device=device)
        for name, value, positive in (("alpha", alpha, True), ("r_max", r_max, True)):
            if not _finite(value) or (positive and value <= 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not _finite(r_min) or r_min <= 0:
            raise ValueError(
                f"r_min must be a finite number > 0 (log R must be finite), got {r_min!r}"
            )
        if not _finite(mode_threshold):
            raise ValueError(f"mode_threshold must be a finite number, got {mode_threshold!r}")
        self.oracle = RNABindingOracle(target, length)
        self.alpha, self.r_min, self.r_max = float(alpha), float(r_min), float(r_max)
        self.mode_threshold = float(mode_threshold)

    @property
    def oracle_calls(self) -> int:
        """Distinct sequences evaluated by ViennaRNA so far (cached values are free)."""
        return self.oracle.oracle_calls

    def fitness(self, seqs: Tensor) -> Tensor:
        """f(x), float64 ``[B]``, of full sequences ``[B, L]`` (through the cached oracle)."""
        return self.oracle(seqs).to(self.device)

    def sequence_log_reward(self, seqs: Tensor) -> Tensor:
        """log R(x) = log R_max + α · log max(f(x), R_min), float64 ``[B]``."""
        f = self.fitness(seqs).clamp(min=self.r_min)
        return self.alpha * f.log() + math.log(self.r_max)

    def is_mode(self, seqs: Tensor) -> Tensor:
        """Bool ``[B]``: f(x) ≥ ``mode_threshold``."""
        return self.fitness(seqs) >= self.mode_threshold


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
