"""Oracle throughput of the RNA (ViennaRNA) and molecule (RDKit) tasks.

Usage: ``python benchmarks/bench_oracles.py [--repeats 5] [--batch 1000]``

Reports medians over ``--repeats`` runs, in sequences per second:

* RNA: fresh batches (every sequence reaches ``RNA.duplexfold``), and the same batch again (all
  cache hits), with their ratio;
* molecules: live RDKit (SMILES assembly + parse + QED) against the shipped table lookup that the
  task uses, with their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from gfn_envs.tasks.molecules import MoleculeString, compute_qed, index_to_sequences
from gfn_envs.tasks.rna import RNABindingOracle


def _median_seconds(fn: Callable[[int], object], repeats: int) -> float:
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        fn(r)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_rna(batch: int, repeats: int) -> dict[str, float]:
    """Sequences/s of the RNA oracle on fresh and on cached batches."""
    oracle = RNABindingOracle(target=1, length=14)
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(4, (batch, 14), generator=gen) for _ in range(repeats)]
    fresh = _median_seconds(lambda r: oracle(batches[r]), repeats)
    cached = _median_seconds(lambda r: oracle(batches[r]), repeats)
    return {"rna_fresh_per_s": batch / fresh, "rna_cached_per_s": batch / cached}


def bench_molecules(batch: int, repeats: int) -> dict[str, float]:
    """Strings/s of live RDKit QED and of the task's table lookup."""
    rng = np.random.default_rng(0)
    indices = [rng.choice(11**5, batch, replace=False) for _ in range(repeats)]
    live = _median_seconds(lambda r: compute_qed(index_to_sequences(indices[r])), repeats)
    task = MoleculeString()
    seqs = [task.sequences_from_index(torch.from_numpy(i)) for i in indices]
    lookup = _median_seconds(lambda r: task.log_reward(seqs[r]), repeats)
    return {"rdkit_live_per_s": batch / live, "table_lookup_per_s": batch / lookup}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}, batch {args.batch}, {args.repeats} repeats")
    rna = bench_rna(args.batch, args.repeats)
    print(
        f"RNA oracle (ViennaRNA duplexfold, 100-nt target): {rna['rna_fresh_per_s']:,.0f} seq/s "
        f"fresh, {rna['rna_cached_per_s']:,.0f} seq/s cached "
        f"(cache {rna['rna_cached_per_s'] / rna['rna_fresh_per_s']:,.0f}x faster)"
    )
    mol = bench_molecules(args.batch, args.repeats)
    print(
        f"Molecule oracle: RDKit live {mol['rdkit_live_per_s']:,.0f} mol/s, table lookup "
        f"{mol['table_lookup_per_s']:,.0f} mol/s "
        f"(table {mol['table_lookup_per_s'] / mol['rdkit_live_per_s']:,.0f}x faster)"
    )


if __name__ == "__main__":
    main()
