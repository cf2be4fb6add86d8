"""``ernie-tiny segment ...``: train the student's subword tokenizer, encode text with it, measure lengths."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ernie_tiny.text_files import read_lines
from ernie_tiny.commands.errors import command_errors
from ernie_tiny.commands.options import TaskOpt, command_group
from ernie_tiny.io_utils import atomic_write_json
from ernie_tiny.tokenization.subword import DEFAULT_MAX_PIECE_CHARS, DEFAULT_VOCAB_SIZE, Segmentation, SubwordTokenizer, WordBoundary, train_subword_tokenizer
from ernie_tiny.tokenization.subword.sources import EMBEDDED, read_corpus_sources
from ernie_tiny.tokenization.subword.train import ModelType
from ernie_tiny.tokenization.vocab_files import TOKENIZER_CONFIG

segment_app = command_group("Subword tokenizer of the student: jieba words + sentencepiece + ERNIE vocab.txt.\n\n"
                            "Example: ernie-tiny segment train --vocab-size 8000 --out runs/tokenizer")
console = Console(stderr=True, highlight=False)

TokenizerDir = Annotated[Path, typer.Option("--tokenizer", exists=True, file_okay=False, help="Tokenizer folder (segment train output, or the "
                                                                "ERNIE-tiny release files).")]
WordsegDict = Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="dict.wordseg.pickle: segment by forward maximum matching "
                                                           "over this word list (ERNIE-tiny release mode).")]


def _load(tokenizer: Path, wordseg_dict: Path | None) -> SubwordTokenizer:
    return SubwordTokenizer.from_directory(tokenizer, wordseg_dict=wordseg_dict)


@segment_app.command()
def train(
    out: Annotated[Path, typer.Option(file_okay=False, help="Folder to write: spm.model, vocab.txt, tokenizer_config.json.")],
    corpus: Annotated[Optional[list[str]], typer.Option(
        help="Training text, repeatable: 'embedded' (People's Daily + reviews, the default), a .tsv with a "
             "text_a column (text_b too), or a text file with one text per line.")] = None,
    vocab_size: Annotated[int, typer.Option(min=1, help="vocab.txt size, the 5 specials included.")] = DEFAULT_VOCAB_SIZE,
    model_type: Annotated[ModelType, typer.Option(help="sentencepiece model.")] = ModelType.UNIGRAM,
    segmentation: Annotated[Segmentation, typer.Option(help="Words before sentencepiece.")] = Segmentation.JIEBA,
    word_boundary: Annotated[WordBoundary, typer.Option(
        help="constraint: pieces never straddle words; space: words joined by spaces (ERNIE-tiny release).")
    ] = WordBoundary.CONSTRAINT,
    user_dict: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="jieba user dictionary (word [freq] [tag] lines).")] = None,
    wordseg_dict: WordsegDict = None,
    split_by_script: Annotated[bool, typer.Option(help="Keep Han, Latin, digits and punctuation in separate "
                                                       "pieces.")] = True,
    max_piece_chars: Annotated[int, typer.Option(min=1, help="Longest piece in chars (short pieces leave room for more "
                                                      "whole words).")] = DEFAULT_MAX_PIECE_CHARS,
    max_sentences: Annotated[Optional[int], typer.Option(min=1, help="Train on this many texts, sampled evenly.")] = None,
) -> None:
    """Train a sentencepiece tokenizer on jieba-segmented text; OUT is a complete tokenizer folder.

    Example: ernie-tiny segment train --vocab-size 70000 --out runs/tokenizer \\
    --corpus embedded --corpus ../shared/data/lcqmc/train.tsv
    """
    if wordseg_dict is not None and segmentation is Segmentation.JIEBA:
        segmentation = Segmentation.WORDSEG  # a word list given means: segment with it
    with command_errors():
        if out.exists() and any(out.iterdir()) and not (out / TOKENIZER_CONFIG).is_file():
            raise ValueError(f"{out} exists and is not a tokenizer folder; choose another --out")
        texts, described = read_corpus_sources(corpus or [EMBEDDED], max_sentences)
        with console.status("training the subword tokenizer") as status:
            tokenizer = train_subword_tokenizer(
                texts, out, vocab_size=vocab_size, model_type=model_type.value, segmentation=segmentation.value,
                word_boundary=word_boundary.value, user_dict=user_dict, wordseg_dict=wordseg_dict,
                corpus_description=described, split_by_script=split_by_script, max_piece_chars=max_piece_chars,
                progress=lambda line: (status.update(line), console.print(line, markup=False)))
    training = tokenizer.config.training
    typer.echo(f"wrote {out}: {tokenizer.vocab_size:,} tokens ({training['model_type']}, "
               f"{tokenizer.config.segmentation.value}/{tokenizer.config.word_boundary.value}), "
               f"{training['chars']:,} training chars")


@segment_app.command()
def encode(
    tokenizer: TokenizerDir,
    text: Annotated[Optional[str], typer.Option(help="Text to encode.")] = None,
    text_b: Annotated[Optional[str], typer.Option(help="Second text of a pair.")] = None,
    file: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="UTF-8 file: one text per line, or 'a<TAB>b' pairs; "
                                                      "prints JSON lines.")] = None,
    max_len: Annotated[int, typer.Option(min=3, help="Truncate to this many tokens, specials included.")] = 512,
    wordseg_dict: WordsegDict = None,
) -> None:
    """Print the pieces and ids of --text, or one JSON line per line of --file.

    Example: ernie-tiny segment encode --tokenizer runs/tokenizer --text "酒店很干净"
    """
    with command_errors():
        if (text is None) == (file is None):
            raise ValueError("give exactly one of --text or --file")
        tok = _load(tokenizer, wordseg_dict)
        if text is not None:
            enc = tok.encode(text, text_b, max_len=max_len)
            typer.echo("pieces: " + " ".join(enc.tokens))
            typer.echo("ids:    " + " ".join(map(str, enc.input_ids)))
            return
        lines = read_lines(file)
        if not lines:
            raise ValueError(f"{file}: no lines to encode (an empty file)")
        batch_size = 1000
        for first in range(0, len(lines), batch_size):
            pairs = []
            for line_no, line in enumerate(lines[first:first + batch_size], start=first + 1):
                fields = line.text.split("\t")
                if len(fields) > 2:
                    raise ValueError(f"{file}:{line_no}: expected a text or 'a<TAB>b', got {len(fields)} fields")
                pairs.append((fields[0], fields[1] if len(fields) == 2 else None))
            for line_no, enc in enumerate(tok.encode_batch(pairs, max_len=max_len), start=first + 1):
                sys.stdout.write(json.dumps({
                    "line": line_no, "tokens": enc.tokens, "ids": enc.input_ids, "type_ids": enc.token_type_ids,
                    "spans": [[s.text_index, s.start, s.end] for s in enc.spans], "truncated": enc.truncated,
                }, ensure_ascii=False) + "\n")


def _default_data_root() -> Path:
    return Path(os.environ.get("ERNIE_TINY_DATA", "../shared/data"))


@segment_app.command()
def stats(
    tokenizer: TokenizerDir,
    task: TaskOpt,
    data_dir: Annotated[Optional[Path], typer.Option(exists=True, file_okay=False,
        help="Folder with <split>.tsv (default: $ERNIE_TINY_DATA/<task folder> or ../shared/data/<task folder>; "
             "none for the embedded reviews).")] = None,
    split: Annotated[str, typer.Option(help="train, dev or test.")] = "dev",
    char_vocab: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False,
        help="ERNIE 1.0 vocab.txt for the char baseline (default: every char + whole Latin word of the texts, "
             "a lower bound of ERNIE's length).")] = None,
    out: Annotated[Optional[Path], typer.Option(dir_okay=False, help="JSON file to write (default: stats/<data folder>-<split>.json "
                                                     "inside the --tokenizer folder).")] = None,
    wordseg_dict: WordsegDict = None,
) -> None:
    """Sequence length (mean / p50 / p95) of char vs subword tokens, the reduction, [UNK] share and speed.

    Example: ernie-tiny segment stats --tokenizer runs/tokenizer --task lcqmc --data-dir ../shared/data/lcqmc
    """
    from ernie_tiny.tokenization.subword.stats import measure_lengths
    from ernie_tiny.tasks import get_task, load_split

    with command_errors():
        spec = get_task(task.value)
        if data_dir is None and not spec.embedded:
            folder = {"chnsenticorp": "chnsenticorp_htl", "msra-ner": "msra_ner"}.get(spec.name, spec.name)
            data_dir = _default_data_root() / folder
        examples = load_split(spec, data_dir, split)
        tok = _load(tokenizer, wordseg_dict)
        char = None
        if char_vocab is not None:
            from ernie_tiny.tokenization.char import CharTokenizer

            char = CharTokenizer.from_vocab_file(char_vocab)
        result = measure_lengths(tok, [(e.text_a, e.text_b) for e in examples], char)
        data_name = data_dir.resolve().name if data_dir is not None else spec.name  # the data, not the task
        out = out or tokenizer / "stats" / f"{data_name}-{split}.json"
        atomic_write_json(out, {"task": spec.name, "split": split, "data_dir": str(data_dir) if data_dir else None,
                                "tokenizer": str(tokenizer), **result.to_json()})

    source = str(data_dir) if data_dir is not None else f"embedded {spec.name}"
    table = Table(title=Text(f"{source} {split}: {result.n_examples:,} examples, {result.n_texts:,} texts"))
    for column in ("", "vocab", "mean", "p50", "p95", "text", "unk %", "texts/s", "tok/s"):
        table.add_column(column, justify="left" if not column else "right")
    for run in (result.char, result.subword):
        table.add_row(run.name, f"{run.vocab_size:,}", f"{run.with_specials.mean:.1f}", f"{run.with_specials.p50:.0f}",
                      f"{run.with_specials.p95:.0f}", f"{run.text_only.mean:.1f}", f"{100 * run.unk_share:.3f}",
                      f"{run.texts_per_s:,.0f}", f"{run.tokens_per_s:,.0f}")
    Console().print(table)
    typer.echo("mean/p50/p95: tokens with [CLS]/[SEP]; text: mean tokens of the texts alone")
    typer.echo(f"reduction: {result.reduction_with_specials_pct:.1f}% with [CLS]/[SEP], "
               f"{result.reduction_text_pct:.1f}% text only")
    typer.echo(f"vocabulary trained on: {'; '.join(result.subword_training.get('corpus', ['unknown']))}")
    typer.echo(f"char baseline: {result.char_baseline}")
    typer.echo(f"wrote {out}")
