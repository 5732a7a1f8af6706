#!/usr/bin/env bash
# The shipped world model (avworld/pretrained/): collect, train both tokenizers, train AV-CDiT's three stages, then export.
#
#   scripts/pretrain.sh [WORK]          # on a machine with a GPU and many cores (about 9 minutes on one H200, 16 cores)
#
# Every step is an avworld command (their settings below); a step that runs out of its time keeps its last checkpoint
# (every trainer saves every few hundred steps) and the next step starts from it. WORK (default ./pretrain) ends with
#   WORK/wm/stage3/checkpoint   the world model with its tokenizers attached, meta.json["provenance"] filled
#   WORK/pretrain.log           every command and its timing
# and, with PRETRAIN_INSTALL=NAME, ships it as pretrained:NAME (the default; weights in bfloat16) under PRETRAIN_ROOT
# (default: the package's own avworld/pretrained, docs/imagination.md "Pretrained world model").
# Settings (environment), defaults for one H200:
#   PRETRAIN_EPISODES (1200) PRETRAIN_SCENES (400) PRETRAIN_MAX_STEPS (60)      the collection, train split from scene 0
#   PRETRAIN_TOKENIZER_PRESET (small) PRETRAIN_TOKENIZER_STEPS (2500) PRETRAIN_TOKENIZER_BATCH (64)
#   PRETRAIN_MODEL_PRESET (small) PRETRAIN_STAGE_STEPS ("500 500 2500") PRETRAIN_MODEL_BATCH (128)
#   PRETRAIN_SECONDS (530): the whole budget; each step's time limit is cut to what is left
#   PRETRAIN_LIMITS ("120 150 90"): seconds at most for the collection, each tokenizer, and each of stages 1 and 2
#   (stage 3 has the rest). On a CPU the tokenizers train one after the other, on a GPU side by side.
#   PRETRAIN_WORKERS (cores - 1), AVWORLD_COMMIT (the code's commit, where the tree has no .git)
#   PRETRAIN_INSTALL (none), PRETRAIN_DESCRIPTION, PRETRAIN_ROOT: ship the result as pretrained:NAME
set -u
cd "$(dirname "$0")/.."
WORK=${1:-${PRETRAIN_WORK:-./pretrain}}
mkdir -p "$WORK" && WORK=$(cd "$WORK" && pwd)
EPISODES=${PRETRAIN_EPISODES:-1200}
SCENES=${PRETRAIN_SCENES:-400}
MAX_STEPS=${PRETRAIN_MAX_STEPS:-60}
TOK_PRESET=${PRETRAIN_TOKENIZER_PRESET:-small}
TOK_STEPS=${PRETRAIN_TOKENIZER_STEPS:-2500}
TOK_BATCH=${PRETRAIN_TOKENIZER_BATCH:-64}
WM_PRESET=${PRETRAIN_MODEL_PRESET:-small}
read -r S1 S2 S3 <<< "${PRETRAIN_STAGE_STEPS:-500 500 2500}"
WM_BATCH=${PRETRAIN_MODEL_BATCH:-128}
BUDGET=${PRETRAIN_SECONDS:-530}
read -r COLLECT_LIMIT TOK_LIMIT STAGE_LIMIT <<< "${PRETRAIN_LIMITS:-120 150 90}"
WORKERS=${PRETRAIN_WORKERS:-$(( $(nproc) > 2 ? $(nproc) - 1 : 1 ))}
START=$(date +%s)
LOG=$WORK/pretrain.log
DATA="data.root=$WORK/datasets data.name=pretrain"

step() {  # step NAME LIMIT COMMAND...: run under min(LIMIT, what is left of the budget), log its time and exit status
  local name=$1 limit=$2
  shift 2
  local left=$(( BUDGET - ($(date +%s) - START) ))
  (( left < limit )) && limit=$left
  if (( limit < 10 )); then
    echo "== $name: skipped, the budget is spent" | tee -a "$LOG"
    return 1
  fi
  echo "== $name (at most $limit s, at $(( $(date +%s) - START )) s): $*" | tee -a "$LOG"
  local t0=$(date +%s)
  timeout -k 5 "$limit" "$@" >> "$WORK/$name.out" 2>&1
  local rc=$?
  echo "   $name: rc=$rc in $(( $(date +%s) - t0 )) s" | tee -a "$LOG"
  return $rc
}

step collect "$COLLECT_LIMIT" avworld collect collect.name=pretrain collect.root="$WORK/datasets" collect.episodes="$EPISODES" \
  collect.scenes="$SCENES" collect.max_steps="$MAX_STEPS" collect.workers="$WORKERS" hydra.run.dir="$WORK/hydra/collect"

TOK="preset=$TOK_PRESET preset.train.steps=$TOK_STEPS preset.train.batch_size=$TOK_BATCH $DATA"
if python3 -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  # the two tokenizers side by side: each leaves the GPU mostly idle
  # shellcheck disable=SC2086
  step video "$TOK_LIMIT" avworld train tokenizer kind=video $TOK out_dir="$WORK/video" hydra.run.dir="$WORK/hydra/video" &
  # shellcheck disable=SC2086
  step audio "$TOK_LIMIT" avworld train tokenizer kind=audio $TOK out_dir="$WORK/audio" hydra.run.dir="$WORK/hydra/audio" &
  wait
else  # one after the other: two torch jobs on a few CPU cores slow each other many times over
  # shellcheck disable=SC2086
  step video "$TOK_LIMIT" avworld train tokenizer kind=video $TOK out_dir="$WORK/video" hydra.run.dir="$WORK/hydra/video"
  # shellcheck disable=SC2086
  step audio "$TOK_LIMIT" avworld train tokenizer kind=audio $TOK out_dir="$WORK/audio" hydra.run.dir="$WORK/hydra/audio"
fi

WM="preset=$WM_PRESET preset.world_model.train.batch_size=$WM_BATCH $DATA out_dir=$WORK/wm"
# shellcheck disable=SC2086
step stage1 "$STAGE_LIMIT" avworld train world_model stage=1 $WM preset.world_model.stage_steps.stage1="$S1" \
  tokenizers.video="$WORK/video/checkpoint" tokenizers.audio="$WORK/audio/checkpoint" hydra.run.dir="$WORK/hydra/stage1"
# shellcheck disable=SC2086
step stage2 "$STAGE_LIMIT" avworld train world_model stage=2 $WM preset.world_model.stage_steps.stage2="$S2" hydra.run.dir="$WORK/hydra/stage2"
# shellcheck disable=SC2086
step stage3 "$BUDGET" avworld train world_model stage=3 $WM preset.world_model.stage_steps.stage3="$S3" hydra.run.dir="$WORK/hydra/stage3"
ls -la "$WORK/wm/stage3/checkpoint" >> "$LOG" 2>&1
if [ -n "${PRETRAIN_INSTALL:-}" ]; then
  # -P: the repository root (the working directory) holds a bare ./avworld that would shadow the installed package
  python3 -P - "$WORK/wm/stage3/checkpoint" "$PRETRAIN_INSTALL" "${PRETRAIN_DESCRIPTION:-AV-CDiT trained by scripts/pretrain.sh}" \
    "${PRETRAIN_ROOT:-}" <<'EOF' 2>&1 | tee -a "$LOG"
import sys
from pathlib import Path

from avworld.models.pretrained import install_pretrained

checkpoint, name, description, root = sys.argv[1:5]
print("installed", install_pretrained(checkpoint, name, description, default=True, root=Path(root) if root else None,
                                      weights_dtype="bfloat16"))
EOF
fi
echo "== done in $(( $(date +%s) - START )) s" | tee -a "$LOG"
