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


def discovery_metrics(
    objects: Tensor, fitness: Tensor, mode_threshold: float, k: int = 100
) -> dict[str, float]:
    """Sampled metrics for landscapes too large to enumerate.

    Args:
        objects: sampled terminal sequences ``[N, L]`` (repeats allowed).
        fitness: their fitness ``[N]``.
        mode_threshold: a distinct sequence with fitness ≥ this is a mode.
        k: size of the top-k set.

    Returns:
        ``modes_found`` (distinct sequences with fitness ≥ threshold), ``unique`` (distinct
        sequences), ``top_k_mean`` (mean fitness of the k best distinct sequences, fewer if fewer
        exist), ``top_k_diversity`` (mean pairwise Hamming distance among them) and ``max``.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if len(objects) == 0:
        nan = math.nan
        return dict(modes_found=0.0, unique=0.0, top_k_mean=nan, top_k_diversity=nan, max=nan)
    distinct, first = torch.unique(objects, dim=0, return_inverse=True)
    best = torch.full((len(distinct),), -math.inf, dtype=torch.float64, device=fitness.device)
    best = best.scatter_reduce(0, first, fitness.double(), reduce="amax")
    top = best.topk(min(k, len(best)))
    chosen = distinct[top.indices]
    if len(chosen) > 1:
        hamming = (chosen.unsqueeze(0) != chosen.unsqueeze(1)).sum(dim=2).double()
        n = len(chosen)
        diversity = float(hamming.sum() / (n * (n - 1)))
    else:
        diversity = 0.0
    return dict(
        modes_found=float((best >= mode_threshold).sum()),
        unique=float(len(distinct)),
        top_k_mean=float(top.values.mean()),
        top_k_diversity=diversity,
        max=float(best.max()),
    )
