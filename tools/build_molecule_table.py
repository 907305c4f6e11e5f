"""Build gfn_envs/data/molecules_qed.npy: QED of all 11^5 MoleculeString strings.

Usage: ``python tools/build_molecule_table.py [--workers N] [--out PATH]``

Every string x (lexicographic index, x_0 most significant) is assembled from the blocks of
``gfn_envs.tasks.molecules.BLOCKS`` and scored with ``rdkit.Chem.QED.qed``; invalid molecules get
0.0. The result is a float32 array of 161,051 entries (about 630 KB). It takes about 100 s on one
core. Needs RDKit (the ``chem`` extra: ``pip install -e '.[chem]'`` in a clone); no network.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from pathlib import Path

import numpy as np

from gfn_envs.tasks.molecules import BLOCKS, LENGTH, compute_qed, index_to_sequences

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "gfn_envs" / "data" / "molecules_qed.npy"


def _chunk(bounds: tuple[int, int]) -> np.ndarray:
    start, stop = bounds
    return compute_qed(index_to_sequences(np.arange(start, stop)))


def build(workers: int) -> np.ndarray:
    """The float32 QED table over all strings, computed in chunks on ``workers`` processes."""
    n = len(BLOCKS) ** LENGTH
    edges = np.linspace(0, n, 65, dtype=np.int64)
    chunks = list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))
    with multiprocessing.Pool(workers) as pool:
        parts = pool.map(_chunk, chunks)
    return np.concatenate(parts).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=max(1, multiprocessing.cpu_count()))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    start = time.perf_counter()
    table = build(args.workers)
    np.save(args.out, table)
    valid = table > 0
    print(
        f"wrote {args.out} ({table.nbytes} bytes) in {time.perf_counter() - start:.1f} s: "
        f"{int(valid.sum())} valid of {len(table)}, max QED {table.max():.4f}"
    )


if __name__ == "__main__":
    main()
