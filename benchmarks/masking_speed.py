"""Masked pretraining examples per second in one worker: jieba at every example vs the cached words.

    python benchmarks/masking_speed.py                                   # the embedded corpus
    python benchmarks/masking_speed.py --corpus wiki.txt --examples 2000 --out runs/bench/masking.json
    python benchmarks/masking_speed.py --no-cache                        # only the uncached path
    git archive HEAD ernie_tiny | tar -x -C /tmp/head && \\
        python benchmarks/masking_speed.py --baseline-tree /tmp/head     # + another source tree's numbers

For each unit level (basic, phrase, entity) and the default mix (0.2 / 0.4 / 0.4) it builds
masked examples ``k = 0, 1, ...`` of the seeded stream one at a time, in this process, the way
one data worker does (``PretrainingData.example``), and reports examples/s:

- ``uncached``: words of untagged sentences segmented by jieba when an example needs them
  (the path before the word cache; ``--no-cache`` runs only this one);
- ``cached``:   words read from the corpus's word cache (built first, with progress, if missing);
- ``baseline``: with ``--baseline-tree DIR``, the same cells measured in a subprocess that imports
  ``ernie_tiny`` from ``DIR`` (e.g. the last commit, to time the code before a change).

The masks of the two paths are compared example by example (they must be identical). The
modes alternate in rounds, so load changes hit both; the load average is recorded beside
every number. Not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

LEVELS = {"basic": (1.0, 0.0, 0.0), "phrase": (0.0, 1.0, 0.0), "entity": (0.0, 0.0, 1.0), "mix": (0.2, 0.4, 0.4)}


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def build(corpus_paths: list[str], max_len: int):
    """The corpus and a char tokenizer built from it, as ``ernie-tiny pretrain`` builds them."""
    from ernie_tiny.pretrain.corpus import open_corpus
    from ernie_tiny.pretrain.embedded import EmbeddedCorpus
    from ernie_tiny.tokenization.char import CharTokenizer

    corpus = open_corpus(corpus_paths) if corpus_paths else EmbeddedCorpus.load()
    texts = itertools.islice(corpus.iter_texts(), 200_000)
    return corpus, CharTokenizer.from_texts(texts, min_freq=3, max_size=18000)


def data_for(corpus, tokenizer, level: str, max_len: int, words=None):
    from ernie_tiny.pretrain.batches import PretrainDataConfig, PretrainingData
    from ernie_tiny.pretrain.masking import MaskingConfig

    basic, phrase, entity = LEVELS[level]
    config = PretrainDataConfig(max_len=max_len, batch_size=32, seed=0,
                                masking=MaskingConfig(basic=basic, phrase=phrase, entity=entity))
    return PretrainingData(corpus, tokenizer, config) if words is None else \
        PretrainingData(corpus, tokenizer, config, words=words)


def timed(data, start: int, count: int) -> tuple[float, list]:
    """Examples/s of building samples ``start .. start + count - 1``, and the examples."""
    began = time.perf_counter()
    examples = [data.example(k) for k in range(start, start + count)]
    return count / (time.perf_counter() - began), examples


def worker_main(args: argparse.Namespace) -> None:
    """--baseline-worker: time the uncached path of whatever ``ernie_tiny`` is importable; print JSON."""
    corpus, tokenizer = build(args.corpus, args.max_len)
    data = {level: data_for(corpus, tokenizer, level, args.max_len) for level in args.levels}
    for level in args.levels:
        data[level].example(10**9)  # load jieba and warm up before timing
    rates = {level: [] for level in args.levels}
    for round_index in range(args.rounds):
        for level in args.levels:
            rates[level].append(timed(data[level], round_index * args.uncached_examples, args.uncached_examples)[0])
    print(json.dumps({"rates": rates, "load": load_average()}))


def baseline(args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--baseline-worker", "--levels", ",".join(args.levels), "--max-len",
               str(args.max_len), "--rounds", str(args.rounds), "--uncached-examples", str(args.uncached_examples)]
    command += [arg for path in args.corpus for arg in ("--corpus", path)]
    env = {**os.environ, "PYTHONPATH": str(Path(args.baseline_tree).resolve())}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"--baseline-tree {args.baseline_tree}: the worker failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def check_ids(corpus, tokenizer, max_len: int) -> None:
    """Exit unless ExampleEncoder gives tokenizer.encode's ids and token starts on every text of the corpus."""
    from ernie_tiny.pretrain.example_ids import ExampleEncoder

    encoder, checked = ExampleEncoder(tokenizer), 0
    for text in corpus.iter_texts():
        expected, got = tokenizer.encode(text, None, max_len=max_len), encoder.encode(text, None, max_len)
        if got.input_ids.tolist() != expected.input_ids or \
                got.text_tokens[0].starts.tolist() != [span.start for span in expected.spans[1:-1]]:
            sys.exit(f"example ids differ from tokenizer.encode on {text!r}")
        checked += 1
    print(f"example ids equal tokenizer.encode on all {checked} texts of the corpus", file=sys.stderr)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", action="append", default=[], help="corpus file or folder (default: embedded)")
    parser.add_argument("--levels", default="basic,phrase,entity,mix", help="comma-separated: basic,phrase,entity,mix")
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--examples", type=int, default=1000, help="cached examples per level and round")
    parser.add_argument("--uncached-examples", type=int, default=100, help="uncached examples per level and round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is reported")
    parser.add_argument("--cache-dir", default=None, help="word cache folder (default: ~/.cache/ernie-tiny/words)")
    parser.add_argument("--workers", type=int, default=1, help="processes that segment the corpus if not cached")
    parser.add_argument("--no-cache", action="store_true", help="time only the uncached path")
    parser.add_argument("--baseline-tree", default=None, help="also time the uncached path of this source tree")
    parser.add_argument("--baseline-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--check-ids", action="store_true", help="first check that the example ids equal "
                        "tokenizer.encode on every text of the corpus")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    args.levels = [level.strip() for level in args.levels.split(",") if level.strip()]
    unknown = sorted(set(args.levels) - set(LEVELS))
    if unknown:
        sys.exit(f"--levels: unknown level(s) {', '.join(unknown)}; choose from {', '.join(LEVELS)}")
    if args.baseline_worker:
        worker_main(args)
        return

    started_load = load_average()
    corpus, tokenizer = build(args.corpus, args.max_len)
    if args.check_ids:
        check_ids(corpus, tokenizer, args.max_len)
    words = None
    if not args.no_cache:
        from ernie_tiny.pretrain.wordcache import corpus_words

        began = time.perf_counter()
        words = corpus_words(corpus, hmm=True, cache_dir=args.cache_dir, workers=args.workers,
                             progress=lambda done, total: print(f"\rwords: {done}/{total} sentences", end="",
                                                                file=sys.stderr, flush=True))
        print(f"\nword cache ready in {time.perf_counter() - began:.1f} s", file=sys.stderr)
    uncached = {level: data_for(corpus, tokenizer, level, args.max_len) for level in args.levels}
    cached = {level: data_for(corpus, tokenizer, level, args.max_len, words) for level in args.levels} if words else {}
    for level in args.levels:  # load jieba, fill the tokenizer memo a little: not part of the timing
        uncached[level].example(10**9)
        if cached:
            cached[level].example(10**9)
    rates = {level: {"uncached": [], "cached": []} for level in args.levels}
    mismatches = {level: 0 for level in args.levels}
    for round_index in range(args.rounds):
        for level in args.levels:
            start = round_index * args.examples
            rate, plain = timed(uncached[level], start, args.uncached_examples)
            rates[level]["uncached"].append(rate)
            if cached:
                rate, fast = timed(cached[level], start, args.examples)
                rates[level]["cached"].append(rate)
                mismatches[level] += sum(a != b for a, b in zip(plain, fast))
        print(f"round {round_index + 1}/{args.rounds} done, load {load_average()}", file=sys.stderr)
    base = baseline(args) if args.baseline_tree else None

    rows = []
    print(f"\nmasked examples/s in one process, max_len {args.max_len}, {len(corpus)} documents "
          f"({', '.join(args.corpus) or 'embedded corpus'}), median of {args.rounds} rounds")
    header = "| level | " + ("baseline tree | " if base else "") + "uncached | " + ("cached | cached / uncached | "
                                                                                       "identical masks |" if cached else "")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for level in args.levels:
        row = {"level": level, "uncached": median(rates[level]["uncached"])}
        cells = [f"{row['uncached']:.0f}"]
        if base:
            row["baseline"] = median(base["rates"][level])
            cells.insert(0, f"{row['baseline']:.0f}")
        if cached:
            row["cached"] = median(rates[level]["cached"])
            row["identical"] = mismatches[level] == 0
            compared = args.rounds * min(args.examples, args.uncached_examples)
            cells += [f"{row['cached']:.0f}", f"{row['cached'] / row['uncached']:.1f}x",
                      "yes" if row["identical"] else f"NO ({mismatches[level]} of {compared} differ)"]
        rows.append(row)
        print(f"| {level} | " + " | ".join(cells) + " |")
    finished_load = load_average()
    print(f"\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; load average {started_load} at the start, {finished_load} at the end"
          + (f", {base['load']} after the baseline" if base else ""))
    if args.out:
        from ernie_tiny.io_utils import atomic_write_json

        atomic_write_json(args.out, {"rows": rows, "rates": rates, "baseline": base, "max_len": args.max_len,
                                     "corpus": args.corpus or "embedded", "load_start": started_load,
                                     "load_end": finished_load, "date": datetime.now(timezone.utc).isoformat()})
    if any(not row.get("identical", True) for row in rows):
        sys.exit("the cached and uncached masks differ")


if __name__ == "__main__":
    main()
