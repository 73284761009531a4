#!/usr/bin/env bash
# The GPU benchmark beside the peer, for one device call (after scripts/gpu-check.sh, or alone):
# each workload of bench/gpu-train.ts, then the peer's run of the same workload
# (shared/peer/peer_bench.py, carried as .device/peer_bench.py), so every ratio comes from one card
# in one call. The XTUNER_TS* and PEER lines go to $OUT/bench.txt, everything to $OUT/bench.log.
#   scripts/gpu-bench.sh           the issue's table: 0.5B and 1.8B LoRA with and without
#                                  checkpointing, 0.5B full, 8B LoRA, then 7B QLoRA (memory)
#   scripts/gpu-bench.sh quick     0.5B LoRA with and without checkpointing, and 0.5B decoding (bf16, --bits 4)
# On a machine without Node tools, carry what scripts/device-pack.sh packs (the peer included).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT:-$(mktemp -d)}
mkdir -p "$OUT_DIR"
LOG=$OUT_DIR/bench.log
: > "$LOG"
source scripts/device-node.sh
BENCH=("${RUN[@]}" bench/gpu-train.ts)
PEER=.device/peer_bench.py
[ -f "$PEER" ] || echo "gpu-bench: $PEER is missing: the peer runs are skipped" | tee -a "$LOG"

ours() { # SHAPE METHOD CKPT(0|1) TIMEOUT [BENCH OPTIONS] (warm-up 2: the first step of a kind runs op by op, the second is captured as a CUDA graph)
  local ck=(); [ "$3" = 1 ] && ck=(--ckpt)
  echo "== xtuner-ts $1 $2 ckpt=$3 ${*:5}" | tee -a "$LOG"
  timeout "$4" "${BENCH[@]}" --shape "$1" --method "$2" --seq 2048 --steps 4 --warmup 2 "${ck[@]}" "${@:5}" 2>&1 | tee -a "$LOG" | grep -E "^XTUNER_TS|Error|error|CUDA graphs:"
}
chat() { # SHAPE TIMEOUT [BENCH OPTIONS]: decoding speed (bench/gpu-chat.ts; no peer: peer_bench.py has no generation)
  echo "== xtuner-ts chat $1 ${*:3}" | tee -a "$LOG"
  env "${CHAT_ENV[@]}" timeout "$2" "${RUN[@]}" bench/gpu-chat.ts --shape "$1" "${@:3}" 2>&1 | tee -a "$LOG" | grep -E "^XTUNER_TS|Error|error"
}
CHAT_ENV=()
peer() { # SHAPE METHOD CKPT(0|1): the peer's bench() of peer_bench.py, without its own plan
  [ -f "$PEER" ] || return 0
  local ck=False; [ "$3" = 1 ] && ck=True
  echo "== peer $1 $2 ckpt=$3" | tee -a "$LOG"
  timeout 150 python3 -c "exec(open('$PEER').read().split('\nimport os\nplan')[0]); bench('$1-shape', $ck, steps=4, warm=1, method='$2')" 2>&1 | tee -a "$LOG" | grep -E "^PEER|Error"
}

# Guards, so a fault of the newest code does not cost the session its numbers: the tensor-core
# attention and the captured step are checked first (seconds); a failure benches without them
# and says so in bench.txt.
guard() { # TEST ENV=VALUE WHAT [NAME-PATTERN]
  if ! timeout 120 "${RUN[@]}" --test ${4:+--test-name-pattern="$4"} "$1" >> "$LOG" 2>&1; then
    export "$2"
    echo "XTUNER_TS_GUARD $1 failed: benching with $2 ($3)" | tee -a "$LOG"
  fi
}
# the default kernels only (the opt-in pipelined forward has a test of its own there)
guard test/cuda/attention.test.ts XTUNER_CUDA_ATTENTION=simt "CUDA-core attention" "forward and backward"
guard test/cuda/train-step.test.ts XTUNER_CUDA_GRAPHS=0 "no CUDA graphs"
# decoding's graphs have a guard of their own, for the chat runs only
if ! timeout 120 "${RUN[@]}" --test test/cuda/decode-graph.test.ts >> "$LOG" 2>&1; then
  CHAT_ENV=(XTUNER_CUDA_GRAPHS=0)
  echo "XTUNER_TS_GUARD test/cuda/decode-graph.test.ts failed: decoding with XTUNER_CUDA_GRAPHS=0" | tee -a "$LOG"
fi

ours qwen2.5-0.5b lora 0 150; peer qwen2.5-0.5b lora 0
ours qwen2.5-0.5b lora 1 150; peer qwen2.5-0.5b lora 1
chat qwen2.5-0.5b 90; chat qwen2.5-0.5b 90 --bits 4
if [ "${1:-}" != quick ]; then
  ours internlm2-1.8b lora 0 180; peer internlm2-1.8b lora 0
  ours internlm2-1.8b lora 1 180; peer internlm2-1.8b lora 1
  ours qwen2.5-0.5b full 1 150; peer qwen2.5-0.5b full 1
  ours llama3-8b lora 0 240; peer llama3-8b lora 0
  ours llama2-7b qlora 1 300 # no peer (no bitsandbytes there); target: peak_mem_gib <= 8
  ours llama2-7b qlora 1 300 --free-gib 7.5 # as on an 8 GB card: trains (op by op if the capture does not fit)
  ours internlm2-7b qlora 1 300 --free-gib 7.5 # XTuner's flagship QLoRA shape on an 8 GB card
  chat llama2-7b 180; chat llama2-7b 180 --bits 4 # chat --bits 4 reads the 4-bit weights per token (nf4Matvec)
fi
grep -E "^(XTUNER_TS|PEER)" "$LOG" > "$OUT_DIR/bench.txt"
echo "== bench.txt"; cat "$OUT_DIR/bench.txt"
