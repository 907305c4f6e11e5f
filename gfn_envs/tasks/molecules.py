"""MoleculeString: length-5 strings of 11 building blocks, assembled by RDKit and scored by QED.

An offline stand-in for the paper's QM9str task (same shape: L = 5, K = 11, |X| = 161,051), whose
proxy model cannot be had offline.

Building blocks
---------------
Each block is a SMILES fragment with two attachment points: its **head** is its first atom and its
**tail** is the last atom written outside any branch. A string x = (b_0, …, b_4) is assembled
linearly by concatenating the fragments, which bonds the tail of b_i to the head of b_{i+1} (the
ring-closure digit 1 is closed inside each ring block, so it can be reused). For example
(phenylene, pyridinediyl, carbonyl, N, C) gives ``c1ccc(cc1)c1ccc(nc1)C(=O)NC``.

=====  ================  =============================================
index  fragment          meaning
=====  ================  =============================================
0      ``C``             carbon (CH2 in the chain, CH3 at an end)
1      ``N``             amine nitrogen
2      ``O``             ether / hydroxyl oxygen
3      ``S``             thioether / thiol sulfur
4      ``C(=O)``         carbonyl
5      ``c1ccc(cc1)``    1,4-phenylene
6      ``c1ccc(nc1)``    pyridine-2,5-diyl
7      ``C1CCC(CC1)``    cyclohexane-1,4-diyl
8      ``C(F)(F)``       difluoromethylene
9      ``F``             fluorine (monovalent: valid only at an end)
10     ``Cl``            chlorine (monovalent: valid only at an end)
=====  ================  =============================================

**Validity.** A string is invalid when RDKit cannot parse and sanitise the assembled SMILES; with
these blocks that happens exactly when F or Cl sits in an inner position (1, 2 or 3), which would
give the halogen two bonds: 72,842 of the 161,051 strings (45.2 %).

Reward
------
q(x) = QED(x) (Bickerton et al. 2012, ``rdkit.Chem.QED.qed``) for valid molecules, q(x) = 0 for
invalid ones. The reward is the paper's transform for QM9str (as in the paper's code,
``envs/bioseq.py``): y = max(q, R_min); y ← y^α; R(x) = R_max · y / max_x y, with α = 5,
R_min = 1e−3, R_max = 10. Invalid molecules therefore get the documented floor reward
R_max·(R_min/max q)^α ≈ 1.4·10^−14 (they are not masked, so every string stays reachable and the
DAG stays the plain sequence DAG).

The QED table of all 161,051 strings (float32, lexicographic order, x_0 most significant) ships as
``gfn_envs/data/molecules_qed.npy``, built once by ``tools/build_molecule_table.py`` (about 100 s);
RDKit is needed only to rebuild or to check it, not to use the task.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib import resources

import numpy as np
import torch
from torch import Tensor

from gfn_envs.tasks.sequence import SequenceTask, reward_transform, top_k_indices

BLOCKS: tuple[str, ...] = (
    "C",
    "N",
    "O",
    "S",
    "C(=O)",
    "c1ccc(cc1)",
    "c1ccc(nc1)",
    "C1CCC(CC1)",
    "C(F)(F)",
    "F",
    "Cl",
)
"""The building blocks, in symbol order (see the module docstring)."""

LENGTH = 5
TABLE_FILE = "molecules_qed.npy"


def _rdkit():  # noqa: ANN202 - the module type of an optional dependency
    try:
        from rdkit import Chem, RDLogger
        from rdkit.Chem import QED
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "computing molecule rewards needs RDKit: pip install 'gfn-gym[chem]'"
        ) from error
    RDLogger.DisableLog("rdApp.*")
    return Chem, QED


def index_to_sequences(indices: Tensor | np.ndarray, length: int = LENGTH) -> np.ndarray:
    """Block strings ``[B, length]`` of lexicographic indices (big-endian base-11)."""
    strides = len(BLOCKS) ** np.arange(length - 1, -1, -1, dtype=np.int64)
    return (np.asarray(indices, dtype=np.int64)[:, None] // strides) % len(BLOCKS)


def to_smiles(sequences: Tensor | np.ndarray) -> list[str]:
    """The assembled SMILES of each block string ``[B, L]`` (not canonicalised, maybe invalid)."""
    blocks = np.asarray(BLOCKS, dtype=object)
    pieces = blocks[np.asarray(sequences, dtype=np.int64)]
    return ["".join(row) for row in pieces]


def qed_of_smiles(smiles: Sequence[str]) -> np.ndarray:
    """QED of each SMILES, float64 ``[B]``; 0.0 where RDKit cannot parse and sanitise it."""
    chem, qed = _rdkit()
    out = np.zeros(len(smiles))
    for i, s in enumerate(smiles):
        mol = chem.MolFromSmiles(s)
        if mol is not None:
            out[i] = qed.qed(mol)
    return out


def compute_qed(sequences: Tensor | np.ndarray) -> np.ndarray:
    """q(x) of block strings ``[B, L]`` computed live with RDKit, as float32 like the table."""
    return qed_of_smiles(to_smiles(sequences)).astype(np.float32)


@cache
def load_qed_table() -> np.ndarray:
    """The shipped float32 table of q(x) over all 11^5 strings, in lexicographic order (read-only)."""
    with (resources.files("gfn_envs") / "data" / TABLE_FILE).open("rb") as handle:
        table = np.load(handle)
    if table.shape != (len(BLOCKS) ** LENGTH,) or table.dtype != np.float32:
        raise RuntimeError(
            f"{TABLE_FILE} is corrupt: expected float32 [{len(BLOCKS) ** LENGTH}], got "
            f"{table.dtype} {list(table.shape)}; rebuild it with tools/build_molecule_table.py"
        )
    table.setflags(write=False)
    return table


class MoleculeString(SequenceTask):
    """Length-5 strings of :data:`BLOCKS` rewarded by the QED of the assembled molecule.

    Args:
        mdp: ``"fill"`` or ``"prepend_append"`` (see :mod:`gfn_envs.tasks.sequence`).
        alpha, r_min, r_max: the paper's reward transform of q(x) (module docstring); defaults are
            the paper's QM9str values 5, 1e−3 and 10.
        mode_fraction: the modes are the top ``mode_fraction`` of strings by reward (default
            0.5 %: 805 strings, ties broken by lexicographic index).
        device: torch device.

    Enumerable in both MDPs (12^5 = 248,832 fill states; 177,156 prepend/append states), so the
    exact metrics of :meth:`SequenceTask.exact_metrics` apply. :meth:`smiles` gives the molecules.
    """

    def __init__(
        self,
        mdp: str = "fill",
        alpha: float = 5.0,
        r_min: float = 1e-3,
        r_max: float = 10.0,
        mode_fraction: float = 0.005,
        device: str | torch.device = "cpu",
    ) -> None:
        if r_min is None or not isinstance(r_min, (int, float)) or not r_min > 0:
            raise ValueError(
                f"r_min must be a number > 0 (invalid molecules need a floor), got {r_min!r}"
            )
        if (
            not isinstance(mode_fraction, (int, float))
            or isinstance(mode_fraction, bool)
            or not 0 < mode_fraction <= 1
        ):
            raise ValueError(f"mode_fraction must be a number in (0, 1], got {mode_fraction!r}")
        qed = torch.from_numpy(load_qed_table().astype(np.float64))
        table = reward_transform(qed, r_min=r_min, alpha=alpha, r_max=r_max)
        super().__init__(LENGTH, len(BLOCKS), mdp=mdp, reward_table=table, device=device)
        self.alpha, self.r_min, self.r_max = float(alpha), float(r_min), float(r_max)
        self.qed_table = qed.to(self.device)
        n_modes = max(1, round(mode_fraction * self.n_sequences))
        self.set_modes(top_k_indices(self.reward_table, n_modes))

    def qed(self, seqs: Tensor) -> Tensor:
        """q(x), float64 ``[B]``, of full strings ``[B, 5]`` (0 for invalid molecules)."""
        return self.qed_table[self.sequence_index(seqs)]

    def is_valid(self, seqs: Tensor) -> Tensor:
        """Bool ``[B]``: whether RDKit accepts the assembled molecule (no inner F or Cl)."""
        return self.qed(seqs) > 0

    def smiles(self, seqs: Tensor) -> list[str]:
        """The assembled (not canonicalised) SMILES of full strings ``[B, 5]``."""
        return to_smiles(torch.as_tensor(seqs).cpu().numpy())
