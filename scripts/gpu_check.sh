#!/usr/bin/env bash
# The GPU figures of issue 25 and a GPU demo, on one GPU, in about 6 minutes: run from the repository root.
#
#   scripts/gpu_check.sh [OUT.json]
#
# Writes one JSON (OUT.json, else $GPU_CHECK_OUT, else ./gpu_check.json) with each part's result and the table's figures,
# rewritten after every part, so a run stopped early keeps what it measured. Each part has its own time limit, shortened
# to what is left of the whole budget; a part that fails or runs out of time is recorded and the next one runs.
# Settings (environment):
#   GPU_CHECK_WORK     folder for each part's output and logs and the demo (default ./gpu_check)
#   GPU_CHECK_SECONDS  the whole budget in seconds, package installation included (default 345)
#   GPU_CHECK_PARTS    the parts to run, in order (default: model dream model_compiled demo dream_compiled base_compiled)
#   GPU_CHECK_DEMO     demo sizes: quick (default), gpu (the full GPU sizes) or none
#   GPU_CHECK_DRY=1    a dry run on the CPU with tiny sizes (checks the script, measures nothing of interest)
# Packages the machine lacks come from the wheels in .whl/ as ../shared/GPU.md shows.
set -u
cd "$(dirname "$0")/.."
OUT=${1:-${GPU_CHECK_OUT:-./gpu_check.json}}
WORK=${GPU_CHECK_WORK:-./gpu_check}
BUDGET=${GPU_CHECK_SECONDS:-345}
PARTS=${GPU_CHECK_PARTS:-model dream model_compiled demo dream_compiled base_compiled}
DEMO=${GPU_CHECK_DEMO:-quick}
START=$(date +%s)
mkdir -p "$WORK" && WORK=$(cd "$WORK" && pwd)
rm -f "$WORK/status.jsonl"

packages="import gymnasium, hydra, omegaconf, pyroomacoustics, minari, av, avworld"
if ! python3 -c "$packages" 2>/dev/null; then
  if [ -d /tmp/site ] && PYTHONPATH=/tmp/site python3 -c "$packages" 2>/dev/null; then
    export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH
  else
    echo "== installing the wheels of .whl/ and avworld into /tmp/site"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-build-isolation --target /tmp/site .whl/* . \
      && export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH
  fi
fi

if [ "${GPU_CHECK_DRY:-0}" = 1 ]; then
  DEVICE=cpu
  MODEL="model_bench.train_batch=4 model_bench.batches=[1,4] model_bench.repeats=1 ++model_bench.device=cpu ++model_bench.peak_tflops=1.0"
  SMALL=tiny BASE=tiny TOKENIZERS=tiny
  DREAM="dream_bench.batches=[2,4] ++dream_bench.devices=[cpu] dream_bench.world_steps=4 dream_bench.max_repeats=2"
  DEMO_SIZES="demo=quick demo.sizes.train_episodes=4 demo.sizes.train_scenes=2 demo.sizes.test_episodes=2 demo.sizes.test_scenes=1
    demo.sizes.max_steps=8 demo.sizes.tokenizer_steps=2 demo.sizes.world_model_steps=2 demo.sizes.eval_windows=4 demo.sizes.horizons=[1]
    demo.sizes.nav_episodes=1 demo.sizes.nav_max_steps=4 demo.sizes.planner_horizon=1 demo.sizes.video_steps=4"
else
  DEVICE=cuda
  MODEL="model_bench.train_batch=256 model_bench.batches=[1,1024] model_bench.repeats=10 ++model_bench.device=cuda"
  SMALL=small BASE=base TOKENIZERS=small
  DREAM="dream_bench.batches=[256,1024] ++dream_bench.devices=[cuda] dream_bench.world_steps=4096 dream_bench.max_repeats=10"
  DEMO_SIZES="demo=$DEMO"
fi
BF16="++model_bench.precisions=[bf16]"
DREAM="avworld bench dream --json dream_bench.presets=[$SMALL] dream_bench.tokenizers=$TOKENIZERS $DREAM dream_bench.real_steps=0
  ++dream_bench.amp=true"
WORKERS=$(( $(nproc) > 2 ? $(nproc) - 1 : 1 ))

merge() {  # gather the parts' results and the table's figures into $OUT
  python3 - "$WORK" "$OUT" "$BUDGET" "$START" "${GPU_CHECK_DRY:-0}" <<'EOF'
import json, os, platform, sys, time
from pathlib import Path

work, out, budget, start, dry = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
parts = {}
for line in (work / "status.jsonl").read_text().splitlines() if (work / "status.jsonl").exists() else []:
    status = json.loads(line)
    name = status.pop("part")
    text = (work / f"{name}.json").read_text().strip() if (work / f"{name}.json").exists() else ""
    try:
        status["result"] = json.loads(text.splitlines()[-1]) if text else None
    except json.JSONDecodeError:
        status["result"] = None
    if status["result"] is None:
        log = work / f"{name}.log"
        status["log_tail"] = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    parts[name] = status


def get(part, *keys):
    value = (parts.get(part) or {}).get("result")
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


small, base = ("tiny", "tiny") if dry else ("small", "base")
b1, big = ("batch1", "batch4") if dry else ("batch1", "batch1024")
decoded, latent = ("batch2", "batch4") if dry else ("batch256", "batch1024")
device = "cpu" if dry else "cuda"
figures = {
    "training_mfu_base_bf16_batch256": {"eager": get("model", "presets", base, "train_mfu_bf16"),
                                        "compiled": get("base_compiled", "presets", base, "train_mfu_bf16")},
    "training_mfu_small_bf16_batch256": {"eager": get("model", "presets", small, "train_mfu_bf16"),
                                         "compiled": get("model_compiled", "presets", small, "train_mfu_bf16")},
    "imagined_step_ms_small_batch1_4_steps": {"eager": get("model", "presets", small, f"imagined_step_ms_{b1}_bf16"),
                                              "compiled": get("model_compiled", "presets", small, f"imagined_step_ms_{b1}_bf16")},
    "imagined_steps_per_s_small_batch1024_sampler": {"eager": get("model", "presets", small, f"imagined_steps_per_s_{big}_bf16")},
    "dream_small_decoded_b256_steps_per_s": {"eager": get("dream", "presets", small, device, "decoded", decoded, "steps_per_s"),
                                             "compiled": get("dream_compiled", "presets", small, device, "decoded", decoded, "steps_per_s")},
    "dream_small_latent_b1024_steps_per_s": {"eager": get("dream", "presets", small, device, "latent", latent, "steps_per_s"),
                                             "compiled": get("dream_compiled", "presets", small, device, "latent", latent, "steps_per_s")},
    "demo_seconds": (parts.get("demo") or {}).get("seconds") if (parts.get("demo") or {}).get("rc") == 0 else None,
}
device_name = get("model", "device_name") or get("dream", "device_name")
report = work / "demo" / "report" / "index.html"
result = {
    "issue": 25,
    "dry_run": dry,
    "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    "device": device_name,
    "host": {"cpus": os.cpu_count(), "machine": platform.machine()},
    "budget_s": budget,
    "elapsed_s": round(time.time() - start, 1),
    "figures": figures,
    "demo_report": str(report) if report.exists() else None,
    "parts": parts,
}
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(result, indent=1) + "\n")
EOF
}

part() {  # part NAME LIMIT COMMAND...: run COMMAND (its stdout to WORK/NAME.json) under min(LIMIT, what is left)
  local name=$1 limit=$2
  shift 2
  local left=$(( BUDGET - ($(date +%s) - START) ))
  (( left < limit )) && limit=$left
  if (( limit < 15 )); then
    echo "{\"part\": \"$name\", \"rc\": null, \"seconds\": 0, \"skipped\": \"budget spent\"}" >> "$WORK/status.jsonl"
    echo "== $name: skipped, the budget is spent"
    merge
    return
  fi
  echo "== $name (at most ${limit} s): $*"
  local t0 rc
  t0=$(date +%s.%N)
  # a compile cache of its own: a part stopped mid-compile leaves no broken cache entry to the next one
  TORCHINDUCTOR_CACHE_DIR="$WORK/cache/$name" timeout -k 5 "$limit" "$@" > "$WORK/$name.json" 2> "$WORK/$name.log"
  rc=$?
  local seconds
  seconds=$(python3 -c "import sys; print(round($(date +%s.%N) - float(sys.argv[1]), 1))" "$t0")
  echo "{\"part\": \"$name\", \"rc\": $rc, \"seconds\": $seconds, \"limit_s\": $limit, \"timed_out\": $([ $rc = 124 ] || [ $rc = 137 ] && echo true || echo false)}" \
    >> "$WORK/status.jsonl"
  echo "   rc=$rc in ${seconds} s"
  merge
}

for name in $PARTS; do
  case $name in
    model)  # eager: training MFU at batch 256 and the imagined step at batch 1 and 1024, small and base, fp32 and bf16
      part model 80 avworld bench model --json "model_bench.presets=[$(echo "$SMALL $BASE" | tr ' ' '\n' | uniq | paste -sd,)]" $MODEL \
        "++model_bench.precisions=[fp32,bf16]" ;;
    dream)
      part dream 60 $DREAM ;;
    model_compiled)  # torch.compile of the training step, CUDA graphs of the sampler (batch 1)
      part model_compiled 110 avworld bench model --json "model_bench.presets=[$SMALL]" $MODEL "model_bench.batches=[1]" $BF16 \
        ++model_bench.compile=true ;;
    dream_compiled)
      part dream_compiled 100 $DREAM ++dream_bench.compile=true ;;
    base_compiled)  # the training step of base compiled (no sampler)
      part base_compiled 100 avworld bench model --json "model_bench.presets=[$BASE]" $MODEL "model_bench.batches=[]" $BF16 \
        ++model_bench.compile=true ;;
    demo)
      if [ "$DEMO" = none ]; then continue; fi
      # shellcheck disable=SC2086
      part demo 150 avworld demo $DEMO_SIZES demo.device=$DEVICE demo.workers=$WORKERS "demo.root=$WORK/demo" "hydra.run.dir=$WORK/demo/hydra" ;;
    *)
      echo "unknown part $name (parts: model dream model_compiled dream_compiled demo base_compiled)" >&2 ;;
  esac
done
merge
echo "== wrote $OUT in $(( $(date +%s) - START )) s"
python3 -c "import json, sys; print(json.dumps(json.load(open(sys.argv[1]))['figures'], indent=1))" "$OUT"
