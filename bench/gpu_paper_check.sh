#!/usr/bin/env bash
# GenReward on pick-place with pretrained models, on a GPU machine, in one command:
#   1. make the pick-place goal (CogVideoX-5B-I2V video, OpenCLIP keyframe, VAE + DINOv3 encodings),
#   2. bench/reward_quality.py on it (does each generated term rank behaviour like the task?),
#   3. a short GenReward run and a DreamerV3 run (same seed, same budget), and a table of both.
#
#   bash bench/gpu_paper_check.sh --video_model=/models/CogVideoX-5b-I2V \
#       --dinov3=/models/dinov3-vits16plus-pretrain-lvd1689m \
#       --clip_pretrained=/models/open_clip_vit_b32_laion2b.bin [--steps=100000] [--out=runs/gpu_check]
#   bash bench/gpu_paper_check.sh --dry-run ...      # check the inputs and print the plan only
#   bash bench/gpu_paper_check.sh --models=tiny ...  # no weights: tiny random-weight models
#
# Inputs are checked first; anything missing is named in one line and the script stops (exit 2).
# Model arguments take a local folder/file or a Hugging Face hub id that is already in the cache.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
MODELS=pretrained
VIDEO_MODEL=THUDM/CogVideoX-5b-I2V
DINOV3=facebook/dinov3-vits16plus-pretrain-lvd1689m
CLIP_MODEL=ViT-B-32
CLIP_PRETRAINED=laion2b_s34b_b79k
OUT=runs/gpu_paper_check
STEPS=100000
SEED=0
DRY_RUN=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    --models=*) MODELS=${arg#*=} ;;
    --video_model=*) VIDEO_MODEL=${arg#*=} ;;
    --dinov3=*) DINOV3=${arg#*=} ;;
    --clip_model=*) CLIP_MODEL=${arg#*=} ;;
    --clip_pretrained=*) CLIP_PRETRAINED=${arg#*=} ;;
    --out=*) OUT=${arg#*=} ;;
    --steps=*) STEPS=${arg#*=} ;;
    --seed=*) SEED=${arg#*=} ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "gpu_paper_check: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done

fail() { echo "gpu_paper_check: $1" >&2; exit 2; }

[[ -x "$PYTHON" ]] || fail "no Python at $PYTHON: make the venv first (README quickstart)"
[[ "$MODELS" == pretrained || "$MODELS" == tiny ]] || fail "--models must be pretrained or tiny"
[[ "$STEPS" =~ ^[0-9]+$ && "$STEPS" -gt 0 ]] || fail "--steps must be a positive integer"

# The accelerator: required for a real run, reported in a dry run.
BACKEND=$("$PYTHON" -c "import jax; print(jax.default_backend())" 2>/dev/null) \
  || fail "jax does not import with $PYTHON"
if [[ "$BACKEND" != gpu && "$BACKEND" != cuda ]]; then
  if [[ $DRY_RUN == 0 ]]; then
    fail "jax sees no GPU (backend '$BACKEND'): install jax[cuda13] (BUILD.md) or pass --dry-run"
  fi
  echo "note: jax backend is '$BACKEND'; a real run needs a GPU"
fi

if [[ "$MODELS" == pretrained ]]; then
  # One line naming the first missing model, via the same resolver make_goals.py uses, offline.
  HF_HUB_OFFLINE=1 "$PYTHON" - "$VIDEO_MODEL" "$DINOV3" "$CLIP_PRETRAINED" <<'EOF' || exit 2
import os, sys
sys.path.insert(0, os.getcwd())
from preprocessing.models import ModelUnavailableError, resolve_folder
video, dino, clip = sys.argv[1:]
try:
    resolve_folder(video, "CogVideoX-5B-I2V", "video_model")
    resolve_folder(dino, "DINOv3 ViT-S/16+", "dinov3")
except ModelUnavailableError as err:
    sys.exit(f"gpu_paper_check: {err}")
if ("/" in clip or clip.endswith((".bin", ".pt", ".safetensors"))) and not os.path.isfile(clip):
    sys.exit(f"gpu_paper_check: OpenCLIP checkpoint {clip} does not exist (--clip_pretrained)")
EOF
  GOAL_FLAGS=(--flagfile=configs/goals_pick_place.cfg --models=pretrained
              "--video_model=$VIDEO_MODEL" "--dinov3=$DINOV3" "--clip_model=$CLIP_MODEL"
              "--clip_pretrained=$CLIP_PRETRAINED" --device=cuda)
  TRAIN_FLAGS=(--flagfile=configs/pick_place.cfg)
else
  GOAL_FLAGS=(--flagfile=configs/goals_pick_place_tiny.cfg)
  TRAIN_FLAGS=(--flagfile=configs/pick_place.cfg --image_size=64)
fi
GOAL="$OUT/goal/goal.npz"
COMMON=("${TRAIN_FLAGS[@]}" "--goal_file=$GOAL" "--steps=$STEPS" "--seed=$SEED"
        --eval_every=$((STEPS / 10 > 0 ? STEPS / 10 : 1)))

echo "plan ($MODELS models, $STEPS env steps per run, seed $SEED, output $OUT):"
echo "  1. $PYTHON preprocessing/make_goals.py ${GOAL_FLAGS[*]} --out_dir=$OUT/goal"
echo "  2. $PYTHON -m bench.reward_quality --goal_file=$GOAL --out=$OUT/reward_quality.json"
echo "  3. $PYTHON -m genreward_jax.main ${COMMON[*]} --logdir=$OUT/genreward"
echo "  4. $PYTHON -m genreward_jax.main ${COMMON[*]} --flagfile=configs/baseline_dreamerv3.cfg --logdir=$OUT/dreamerv3"
echo "  5. tables: reward quality, and eval return/success of both runs"
if [[ $DRY_RUN == 1 ]]; then
  echo "dry run: inputs checked, nothing run"
  exit 0
fi

mkdir -p "$OUT"
[[ -f "$GOAL" ]] || "$PYTHON" preprocessing/make_goals.py "${GOAL_FLAGS[@]}" "--out_dir=$OUT/goal"
"$PYTHON" -m bench.reward_quality "--goal_file=$GOAL" "--out=$OUT/reward_quality.json"
"$PYTHON" -m genreward_jax.main "${COMMON[@]}" "--logdir=$OUT/genreward"
"$PYTHON" -m genreward_jax.main "${COMMON[@]}" --flagfile=configs/baseline_dreamerv3.cfg \
  "--logdir=$OUT/dreamerv3"
echo
cat "$OUT/reward_quality.md"
echo
"$PYTHON" - "$OUT" <<'EOF'
import os, sys
sys.path.insert(0, os.getcwd())
from genreward_jax.metrics_log import read_metrics
out = sys.argv[1]
runs = {name: [m for m in read_metrics(os.path.join(out, name)) if "eval/dense_return" in m]
        for name in ("genreward", "dreamerv3")}
print("| env steps | GenReward return | GenReward success | DreamerV3 return | DreamerV3 success |")
print("|---|---|---|---|---|")
for g, d in zip(runs["genreward"], runs["dreamerv3"]):
    print(f"| {int(g['step'])} | {g['eval/dense_return']:.1f} | {g['eval/success']:.2f} | "
          f"{d['eval/dense_return']:.1f} | {d['eval/success']:.2f} |")
EOF
