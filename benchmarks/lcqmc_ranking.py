"""A small answer-ranking set (the ``nlpcc-dbqa`` layout) built from LCQMC question pairs.

NLPCC-DBQA is not available offline. Its layout is ``qid text_a text_b label``: one query,
many candidate answers, label 1 for the right one, scored by MRR over query ids. This
script builds the same layout from ``../shared/data/lcqmc`` (issue 15 allows it), each
split from the same LCQMC split (no text crosses splits):

1. query = an LCQMC ``text_a`` with at least one pair labelled 1 (similar); one qid per
   distinct text_a, in file order, at most ``--max-queries`` per split;
2. its candidates = every LCQMC pair of that text_a (label 1: the matching question; label
   0: LCQMC's own lexically close non-matching question), plus ``--negatives`` questions of
   other queries of the split (label 0): of a seeded random sample of 64 other ``text_b``,
   the ones sharing the most characters with the query (hard, not random, negatives);
3. candidates are shuffled per query with the seed, so file order says nothing.

Example::

    python benchmarks/lcqmc_ranking.py --data-dir ../shared/data/lcqmc --out runs/dbqa_lcqmc \\
        --max-queries 1500 --negatives 3
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SAMPLE = 64  # other questions looked at per query when picking its hard negatives


@dataclass(frozen=True)
class RankingRow:
    qid: str
    text_a: str
    text_b: str
    label: int


def build_ranking_rows(examples: Sequence, max_queries: int | None, negatives: int, seed: int) -> list[RankingRow]:
    """Ranking rows from LCQMC examples (``text_a``, ``text_b``, ``label`` 0/1), as the module docstring says."""
    pairs_of: dict[str, list[tuple[str, int]]] = {}
    for e in examples:
        pairs_of.setdefault(e.text_a, []).append((e.text_b, int(e.label)))
    queries = [q for q, pairs in pairs_of.items() if any(label == 1 for _, label in pairs)][:max_queries]
    pool = sorted({b for pairs in pairs_of.values() for b, _ in pairs})
    rng = random.Random(seed)
    rows = []
    for number, query in enumerate(queries):
        own = list(dict.fromkeys(pairs_of[query]))
        taken = {b for b, _ in own} | {query}
        sample = [b for b in rng.sample(pool, min(SAMPLE, len(pool))) if b not in taken]
        chars = set(query)
        hard = sorted(sample, key=lambda b: (-len(chars & set(b)), b))[:negatives]
        candidates = own + [(b, 0) for b in hard]
        rng.shuffle(candidates)
        rows += [RankingRow(f"q{number}", query, b, label) for b, label in candidates]
    return rows


def write_ranking_tsv(rows: Sequence[RankingRow], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["qid\ttext_a\ttext_b\tlabel"] + [f"{r.qid}\t{r.text_a}\t{r.text_b}\t{r.label}" for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from ernie_tiny.tasks import load_split

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="the lcqmc folder (train/dev/test.tsv)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-queries", type=int, default=None, help="per split")
    parser.add_argument("--negatives", type=int, default=3, help="hard negatives added per query")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    for split in ("train", "dev", "test"):
        rows = build_ranking_rows(load_split("lcqmc", args.data_dir, split), args.max_queries, args.negatives,
                                  args.seed)
        write_ranking_tsv(rows, Path(args.out) / f"{split}.tsv")
        print(f"{split}: {len({r.qid for r in rows})} queries, {len(rows)} rows, "
              f"{sum(r.label for r in rows)} relevant")


if __name__ == "__main__":
    main()
