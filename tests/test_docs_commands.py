"""Every ``ernie-tiny ...`` command line in README.md and docs/ names a command and options the CLI has.

The docs are read as a user would copy them: shell code blocks (``bash``, ``sh``, ``console`` or no
language; ``python`` blocks are not shell), lines joined at a trailing ``\\``, comments dropped,
split at pipes, ``&&`` and ``;``; inline code spans that start with ``ernie-tiny`` count too (the
command table). A simple command is checked when its program is ``ernie-tiny`` (any path to it,
after ``NAME=value`` prefixes) or when a launcher runs it (``nice -n 10 ernie-tiny ...``,
``torchrun ... -m ernie_tiny ...``); ``make``, ``pip``, ``curl`` and ``python benchmarks/...`` lines
are other programs and are skipped.

Checked against ``typer.main.get_command(ernie_tiny.cli.app)``, the click tree behind the console
script: each command and sub-command exists, each ``--option`` (or ``-x``) exists on the command it
is given to, and a value given to an option with fixed choices is one of them. Positional arguments
and free option values are not checked. The tree is read from the app at test time, so commands and
options added later are known as soon as they exist.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = "ernie-tiny"
MODULE = "ernie_tiny"
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console", "zsh"}
LAUNCHERS = {"nice", "nohup", "time", "env", "sudo", "timeout", "taskset", "numactl", "torchrun", "exec"}
PLACEHOLDERS = {"...", "…"}  # "ernie-tiny teacher ...": the rest of the line is left to the reader
OPTION = re.compile(r"^--?[A-Za-z]")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")
INLINE_CODE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")


@dataclass(frozen=True)
class DocCommand:
    """One ``ernie-tiny`` invocation found in a markdown file."""

    where: str  # "README.md:42"
    text: str  # the logical line it came from, continuations joined
    words: tuple[str, ...]  # what follows the program name


def shell_lines(markdown: str) -> Iterator[tuple[int, str]]:
    """(first line number, logical line) of every shell code-block line and every inline code span."""
    fence, language = None, ""
    pending, pending_start = "", 0
    for number, line in enumerate(markdown.splitlines(), start=1):
        opened = FENCE.match(line)
        if fence is None:
            if opened:
                fence, language = opened.group(1), opened.group(2).lower()
                continue
            for span in INLINE_CODE.findall(line):
                if span.strip().split(" ")[0] == PROGRAM:
                    yield number, span.strip()
            continue
        if opened and opened.group(1).startswith(fence) and not opened.group(2):  # the closing fence
            if pending:
                yield pending_start, pending
            fence, pending = None, ""
            continue
        if language not in SHELL_LANGUAGES:
            continue
        text = line.strip()
        if not pending:
            pending_start = number
            text = text[2:] if text.startswith("$ ") else text  # a console prompt
        if text.endswith("\\"):
            pending += text[:-1].rstrip() + " "
            continue
        yield pending_start, pending + text
        pending = ""


def split_commands(line: str) -> list[list[str]]:
    """The simple commands of one shell line: words split at |, ||, &&, ;, &, parentheses and redirects."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands, current = [], []
    for word in lexer:
        if word and all(char in "();<>|&" for char in word):
            commands.append(current)
            current = []
        else:
            current.append(word)
    commands.append(current)
    return [words for words in commands if words]


def program_arguments(words: list[str]) -> list[str] | None:
    """What follows ``ernie-tiny`` (or ``-m ernie_tiny``) in a simple command, or None if it runs another program."""
    while words and ENV_ASSIGNMENT.match(words[0]):
        words = words[1:]
    if not words:
        return None
    program = Path(words[0]).name
    if program == PROGRAM:
        return words[1:]
    if program not in LAUNCHERS and not program.startswith("python"):
        return None
    for index, word in enumerate(words[1:], start=1):
        if Path(word).name == PROGRAM and not OPTION.match(word):
            return words[index + 1:]
        if word == "-m" and index + 1 < len(words):
            return words[index + 2:] if words[index + 1] == MODULE else None
    return None


def doc_commands(markdown: str, name: str) -> list[DocCommand]:
    """Every ``ernie-tiny`` invocation in one markdown text (``name`` labels where it was found)."""
    found = []
    for number, line in shell_lines(markdown):
        try:
            commands = split_commands(line)
        except ValueError as error:  # unbalanced quotes: say so rather than skip the line
            found.append(DocCommand(f"{name}:{number}", line, ("<unparsable: " + str(error) + ">",)))
            continue
        for words in commands:
            arguments = program_arguments(words)
            if arguments is not None:
                found.append(DocCommand(f"{name}:{number}", line, tuple(arguments)))
    return found


def option_table(command) -> dict[str, object]:
    """Every option name a click command accepts (``--x``, ``--no-x``, ``-x``, its help option) -> its parameter."""
    table = {}
    for param in command.params:
        if getattr(param, "param_type_name", "") == "option":
            for name in (*param.opts, *param.secondary_opts):
                table[name] = param
    for name in (command.context_settings or {}).get("help_option_names", ["--help"]):
        table[name] = None
    return table


def option_choices(param) -> list[str]:
    """The values an option with fixed choices accepts (click's ``Choice``, or typer's enum descriptor); [] if free."""
    choices = getattr(getattr(param, "type", None), "choices", None)  # click
    if choices is None:
        choices = getattr(getattr(param, "type_descriptor", None), "choices", None)  # typer >= 0.2x
    return [str(getattr(choice, "value", choice)) for choice in choices or ()]


def takes_value(param) -> bool:
    return param is not None and not getattr(param, "is_flag", False) and not getattr(param, "count", False)


def check_command(doc: DocCommand, root) -> list[str]:
    """Problems of one invocation against the click tree ``root``: unknown commands, options, choices."""
    problems = []
    command, path = root, [PROGRAM]
    words = list(doc.words)
    where = f"{doc.where}: `{doc.text}`:"
    while words:
        word = words.pop(0)
        if word.startswith("<unparsable"):
            return [f"{where} {word}"]
        if word == "--" or word in PLACEHOLDERS:
            break
        if OPTION.match(word):
            name, has_inline_value, inline_value = word.partition("=")
            options = option_table(command)
            if name not in options:
                problems.append(f"{where} `{' '.join(path)}` has no option {name}")
                continue
            param = options[name]
            if takes_value(param) and (has_inline_value or words):
                value = inline_value if has_inline_value else words.pop(0)
                choices = option_choices(param)
                if choices and not value.startswith("$") and value not in choices:
                    problems.append(f"{where} `{' '.join(path)} {name}` takes {'|'.join(choices)}, not {value!r}")
            continue
        subcommands = getattr(command, "commands", None)
        if subcommands is None:
            continue  # a positional argument of a leaf command: not checked
        if word not in subcommands:
            problems.append(f"{where} `{' '.join(path)}` has no command {word!r} "
                            f"(it has: {', '.join(sorted(subcommands))})")
            break
        command = subcommands[word]
        path.append(word)
    return problems


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.fixture(scope="module")
def cli_tree():
    from ernie_tiny.cli import app

    return typer.main.get_command(app)


def test_every_documented_command_parses_against_the_cli(cli_tree):
    problems, count = [], 0
    for path in markdown_files():
        for doc in doc_commands(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT))):
            count += 1
            problems += check_command(doc, cli_tree)
    readme_count = len(doc_commands((ROOT / "README.md").read_text(encoding="utf-8"), "README.md"))
    assert readme_count >= 10, f"only {readme_count} ernie-tiny command lines found in README.md: is the parser broken?"
    assert not problems, f"{len(problems)} of {count} documented command lines do not match the CLI:\n" + "\n".join(
        problems)


REMOVED_OPTION_README = """\
# a README after an option was removed from the CLI

```bash
make demo
OMP_NUM_THREADS=2 ernie-tiny distill --teacher runs/t/best --task lcqmc \\
    --data-dir ../shared/data/lcqmc --kd-temperature 2 --out runs/s | tee distill.log
```
"""


def test_a_readme_naming_a_removed_option_fails(cli_tree):
    (doc,) = doc_commands(REMOVED_OPTION_README, "README.md")
    problems = check_command(doc, cli_tree)
    assert problems == ["README.md:5: `OMP_NUM_THREADS=2 ernie-tiny distill --teacher runs/t/best --task lcqmc "
                        "--data-dir ../shared/data/lcqmc --kd-temperature 2 --out runs/s | tee distill.log`: "
                        "`ernie-tiny distill` has no option --kd-temperature"]


def test_the_real_readme_fails_once_one_of_its_options_is_renamed(cli_tree):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first = next(doc for doc in doc_commands(readme, "README.md") if any(w.startswith("--") for w in doc.words))
    option = next(word.partition("=")[0] for word in first.words if word.startswith("--"))
    lines = readme.splitlines()
    start = int(first.where.split(":")[1]) - 1
    at = next(i for i in range(start, len(lines)) if re.search(rf"{re.escape(option)}\b", lines[i]))
    lines[at] = re.sub(rf"{re.escape(option)}\b", option + "-removed", lines[at], count=1)
    problems = [p for doc in doc_commands("\n".join(lines), "README.md") for p in check_command(doc, cli_tree)]
    assert any(p.startswith(f"README.md:{start + 1}:") and p.endswith(f"has no option {option}-removed")
               for p in problems), problems


@pytest.mark.parametrize("markdown, problem", [
    ("```bash\nernie-tiny distil --teacher t --out o\n```\n", "doc.md:2: `ernie-tiny distil --teacher t --out o`: "
     "`ernie-tiny` has no command 'distil' (it has: augment, bench, distill, "),
    ("```bash\nernie-tiny teacher fine-tune --out o\n```\n", "`ernie-tiny teacher` has no command 'fine-tune'"),
    ("```\nnice -n 10 ernie-tiny export --model m --out o --quantise int8\n```\n",
     "`ernie-tiny export` has no option --quantise"),
    ("```bash\ntorchrun --nproc_per_node 8 -m ernie_tiny pretrain --out o --max-step 5\n```\n",
     "`ernie-tiny pretrain` has no option --max-step"),
    ("```bash\nernie-tiny distill --teacher t --out o --stage joint-ish\n```\n",
     "`ernie-tiny distill --stage` takes intermediate|prediction|both|joint, not 'joint-ish'"),
    ("| `predict` | `ernie-tiny predict --model m --txt 好` |\n",
     "doc.md:1: `ernie-tiny predict --model m --txt 好`: `ernie-tiny predict` has no option --txt"),
    ("```console\n$ ernie-tiny serve --model m --port=8888 --batch 4\n```\n",
     "doc.md:2: `ernie-tiny serve --model m --port=8888 --batch 4`: `ernie-tiny serve` has no option --batch"),
])
def test_unknown_commands_options_and_choices_are_named(cli_tree, markdown, problem):
    (doc,) = doc_commands(markdown, "doc.md")
    problems = check_command(doc, cli_tree)
    assert len(problems) == 1 and problem in problems[0], problems


def test_what_is_not_an_ernie_tiny_command_is_skipped():
    markdown = """\
```bash
make test
pip install 'ernie-tiny[serve]'
python benchmarks/serve_load.py --model runs/m --whatever 3
curl -s localhost:8888/healthz      # ernie-tiny --not-checked
ls ~/.cache/ernie-tiny/subword
```

```python
print("ernie-tiny --nothing")
```

Prose with `ernie-tiny-like` and `--stage both` spans.
"""
    assert doc_commands(markdown, "doc.md") == []


def test_continuations_pipes_prefixes_and_placeholders_parse(cli_tree):
    markdown = """\
```bash
ERNIE_TINY_DATA=../shared/data OMP_WAIT_POLICY=PASSIVE .venv/bin/ernie-tiny bench --synthetic --task lcqmc \\
    --student-tokenizer runs/subword --backend torch --backend=onnxruntime && echo done
ernie-tiny predict --model exported/m --text 房间很干净 | python -m json.tool > out.json
ernie-tiny distill $COMMON --stage prediction --soft-weight 0 --hard-weight 1 --out runs/x   # a comment --nope
ernie-tiny teacher ...
ernie-tiny --help; ernie-tiny segment train --help
python -m ernie_tiny teacher convert ERNIE_1.0_max-len-512 runs/ernie-1.0 --overwrite
```
"""
    docs = doc_commands(markdown, "doc.md")
    assert [doc.where for doc in docs] == ["doc.md:2", "doc.md:4", "doc.md:5", "doc.md:6", "doc.md:7", "doc.md:7",
                                           "doc.md:8"]
    assert docs[0].words[:3] == ("bench", "--synthetic", "--task")
    assert "--nope" not in docs[2].words
    assert [problem for doc in docs for problem in check_command(doc, cli_tree)] == []
