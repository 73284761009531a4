#!/usr/bin/env bash
# The CLI on the GPU, for one device call: the quickstart's whole path (data, train, convert,
# merge, chat) with --device cuda on the tiny model, in float32 and in bf16 (the tensor-core
# attention), then a real-size QLoRA run through `xtuner train` (Qwen2.5-0.5B shape, random bf16
# weights, the Qwen3 tokenizer of test/fixtures, 2048-token packed rows) and chats with the
# result, in bf16 and with the base in NF4 (--bits 4). Needs dist/ and, on a machine without the
# dev tools, what scripts/device-pack.sh packs. Logs under $OUT (cli.log); prints a summary last.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
OUT_DIR=${OUT:-$(mktemp -d)}
mkdir -p "$OUT_DIR"
LOG=$OUT_DIR/cli.log
: > "$LOG"
source scripts/device-node.sh
[ -f dist/cli/main.js ] || { echo "gpu-cli: dist/ is missing (npm run build)" | tee -a "$LOG"; exit 2; }
MAKE=("${RUN[@]}" bench/make-shape-model.ts)
XT=(node "$REPO/bin/xtuner.js")
TINY=$( [ -d .device/tiny-assistant ] && echo "$REPO/.device/tiny-assistant" )
SUMMARY=()
step() { # NAME TIMEOUT CMD...: runs in the current folder, logs, records pass/fail
  local name=$1 t=$2; shift 2
  echo "== $name: $*" | tee -a "$LOG"
  local s=$(date +%s)
  timeout "$t" "$@" >> "$LOG" 2>&1
  local rc=$?
  SUMMARY+=("$(printf '%-34s exit %-3s %4ss' "$name" "$rc" "$(( $(date +%s) - s ))")")
  return $rc
}

quickstart() { # DTYPE
  local dir=/tmp/xtuner-qs-$1
  rm -rf "$dir" && mkdir -p "$dir/examples" && cd "$dir" || return
  if [ -n "$TINY" ]; then cp -r "$TINY" examples/tiny-assistant; else (cd "$REPO" && "${RUN[@]}" examples/tiny-assistant/build-model.ts "$dir/examples/tiny-assistant" >/dev/null); fi
  step "quickstart $1: data" 60 "${XT[@]}" make-assistant-data --name 小助手测试 --n 2000
  step "quickstart $1: train (cuda)" 240 "${XT[@]}" train "$REPO/configs/tiny_llama_lora_self_cognition_e1.ts" --device cuda --cfg-options dtype=$1 &&
    step "quickstart $1: convert" 60 "${XT[@]}" convert pth_to_hf "$REPO/configs/tiny_llama_lora_self_cognition_e1.ts" "work_dirs/tiny_llama_lora_self_cognition_e1/$(cat work_dirs/tiny_llama_lora_self_cognition_e1/last_checkpoint)" hf_adapter &&
    step "quickstart $1: merge" 60 "${XT[@]}" convert merge examples/tiny-assistant hf_adapter merged &&
    step "quickstart $1: chat (cuda)" 60 "${XT[@]}" chat merged --device cuda --prompt-template internlm2_chat --prompt 请做一下自我介绍
  grep -A2 "^== quickstart $1: chat" "$LOG" | tail -n 2 | cut -c1-300 | tee -a "$OUT_DIR/answers.txt"
  cd "$REPO" || exit 1
}
quickstart float32
quickstart bfloat16

# real size: QLoRA of a Qwen2.5-0.5B-shaped model through `xtuner train`
dir=/tmp/xtuner-qwen && rm -rf $dir && mkdir -p $dir
step "qwen2.5-0.5b shape: weights" 120 "${MAKE[@]}" qwen2.5-0.5b $dir/model
cd $dir || exit 1
cp "$REPO/test/fixtures/tokenizers/qwen3_tokenizer.json" model/tokenizer.json
cp "$REPO/test/fixtures/tokenizers/qwen3_tokenizer_config.json" model/tokenizer_config.json
step "qwen2.5-0.5b shape: data" 60 "${XT[@]}" make-assistant-data --name 小助手测试 --n 2000
step "qwen2.5-0.5b shape: qlora train (cuda)" 300 "${XT[@]}" train "$REPO/configs/qwen2_5_0_5b_instruct_qlora_alpaca_e3.ts" --device cuda \
  --cfg-options pretrained_model_name_or_path=model data_path=data/personal_assistant.jsonl dataset_format=openai \
  max_iters=40 warmup_ratio=0.1 accumulative_counts=4 save_steps=40 evaluation_freq=40 log_interval=4 'evaluation_inputs=["请做一下自我介绍"]'
grep -E "^Iter|tokens/s" "$LOG" | tail -n 4
step "qwen2.5-0.5b shape: chat (cuda)" 120 "${XT[@]}" chat model --device cuda --prompt-template qwen_chat --max-new-tokens 16 --prompt 请做一下自我介绍
step "qwen2.5-0.5b shape: chat --bits 4 (cuda)" 120 "${XT[@]}" chat model --bits 4 --device cuda --prompt-template qwen_chat --max-new-tokens 16 --prompt 请做一下自我介绍
cd "$REPO" || exit 1

{
  echo "== gpu-cli summary ($(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1))"
  printf '%s\n' "${SUMMARY[@]}"
} | tee "$OUT_DIR/cli-summary.txt"
