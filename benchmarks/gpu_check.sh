#!/usr/bin/env bash
# Every GPU figure of issues 23 (fast path) and 24 (training speed) in one run, printed as one markdown table.
#
#   benchmarks/gpu_prepare.sh                      # here, once: fills the git-ignored .gpu/ to carry
#   benchmarks/gpu_check.sh                        # on the GPU host (carry .gpu): DEVICE=cuda PRESET=real
#   DEVICE=cpu PRESET=micro benchmarks/gpu_check.sh   # the dry run on a CPU (a few minutes on 2 cores)
#
# Needs a stock CUDA PyTorch plus this repository; what that image lacks (jieba, rjieba, fastapi, uvicorn)
# comes from .gpu/wheels, the data from .gpu/ (the LCQMC and ChnSentiCorp splits, the embedded text, the
# student's subword tokenizer). Each stage has its own time limit (*_LIMIT_S below, seconds) so the whole
# run stays within 8 minutes on one H200; a stage that fails or runs out of time is a row saying so.
# Stages write JSON under $OUT; benchmarks/gpu_table.py turns them into the one table.
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
PRESET=${PRESET:-real}
OUT=${OUT:-runs/gpu_check}
PY=${PY:-python3}
# each stage's time limit in seconds; together they keep the check within 8 minutes (STAGE_LIMIT_S sets all four)
TOKENIZER_LIMIT_S=${TOKENIZER_LIMIT_S:-${STAGE_LIMIT_S:-60}}
INFERENCE_LIMIT_S=${INFERENCE_LIMIT_S:-${STAGE_LIMIT_S:-150}}
SERVE_LIMIT_S=${SERVE_LIMIT_S:-${STAGE_LIMIT_S:-100}}
TRAIN_LIMIT_S=${TRAIN_LIMIT_S:-${STAGE_LIMIT_S:-150}}
mkdir -p "$OUT"
rm -f "$OUT"/stages.jsonl

if ! "$PY" -c "import jieba, rjieba, fastapi, uvicorn" >/dev/null 2>&1 && [ -d .gpu/wheels ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu_site \
    .gpu/wheels/*.whl >/dev/null 2>&1 && export PYTHONPATH=/tmp/gpu_site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
# the tokenizers' C loops (tokenization/_speedups.c), built in place where the host has a compiler; else Python runs
"$PY" setup.py -q build_ext --inplace >/dev/null 2>&1 || cp .gpu/speedups/_speedups.* ernie_tiny/tokenization/ 2>/dev/null
"$PY" -c "from ernie_tiny.tokenization.speedups import compiled_speedups as c; assert c()" 2>/dev/null \
  || echo "gpu_check: _speedups.c neither built nor carried: the tokenizers run their Python loops" >&2
[ -d .gpu/embedded ] && export ERNIE_TINY_EMBEDDED_DATA=${ERNIE_TINY_EMBEDDED_DATA:-$PWD/.gpu/embedded}
[ -d .gpu/data ] && export ERNIE_TINY_DATA=${ERNIE_TINY_DATA:-$PWD/.gpu/data}
# the carried caches (the default subword tokenizer) copied to a cache under $OUT: .gpu itself stays as carried
if [ -d .gpu/cache ] && [ -z "${ERNIE_TINY_CACHE:-}" ]; then
  export ERNIE_TINY_CACHE=$(cd "$OUT" && pwd)/cache
  mkdir -p "$ERNIE_TINY_CACHE" && cp -r .gpu/cache/. "$ERNIE_TINY_CACHE/"
fi
export ERNIE_TINY_DATA=${ERNIE_TINY_DATA:-$(cd .. && pwd)/shared/data}
# the embedded corpus's jieba words, segmented once by gpu_prepare.sh (pretraining masks with them)
[ -f .gpu/words.tar.xz ] && [ -n "${ERNIE_TINY_CACHE:-}" ] && tar -C "$ERNIE_TINY_CACHE" -xJf .gpu/words.tar.xz

# stage NAME LIMIT_S COMMAND...: run one measurement, log it, and record its exit status and wall time
stage() {
  local name=$1 limit=$2 started rc
  shift 2
  started=$(date +%s)
  echo "== $name: $*" >&2
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  printf '{"stage": "%s", "rc": %d, "seconds": %d, "command": "%s"}\n' \
    "$name" "$rc" "$(( $(date +%s) - started ))" "$*" >>"$OUT/stages.jsonl"
  [ "$rc" -eq 0 ] || { echo "   $name: exit $rc (last lines of $OUT/$name.log follow)" >&2; tail -5 "$OUT/$name.log" >&2; }
}

micro=$([ "$PRESET" = micro ] && echo 1 || echo 0)
stage tokenizer "$TOKENIZER_LIMIT_S" "$PY" benchmarks/tokenizer_speed.py --data-root "$ERNIE_TINY_DATA" \
  --repeats $([ $micro = 1 ] && echo 1 || echo 3) --out "$OUT/tokenizer_speed.json"
stage inference "$INFERENCE_LIMIT_S" "$PY" benchmarks/gpu_inference.py --device "$DEVICE" --preset "$PRESET" \
  --data-dir "$ERNIE_TINY_DATA/lcqmc" --out "$OUT/inference"
stage serve "$SERVE_LIMIT_S" "$PY" benchmarks/serve_load.py --backend torch --device "$DEVICE" \
  --preset $([ $micro = 1 ] && echo student-micro || echo ernie-tiny) \
  --requests $([ $micro = 1 ] && echo 64 || echo 1000) --concurrency 1,32 --data-root "$ERNIE_TINY_DATA" \
  --out "$OUT/serve"
stage train "$TRAIN_LIMIT_S" "$PY" benchmarks/train_speed.py --device "$DEVICE" --preset "$PRESET" --out "$OUT/train"

"$PY" benchmarks/gpu_table.py "$OUT" --device "$DEVICE" --preset "$PRESET"
