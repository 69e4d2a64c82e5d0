#!/usr/bin/env bash
# The paper's Table 1 in miniature, on a CPU (docs/shapes_world.md, "Quickstart").
#
#   bash scripts/shapes/quickstart.sh [RUN_DIR]          # full run (eval split of shapes32, 4 images per prompt)
#   QUICK=1 bash scripts/shapes/quickstart.sh RUN_DIR    # reduced CI setting: 1 prompt per task, short training
#
# 1. loads the committed tiny Show-o (checkpoints/shapes/showo, with its MAGVIT-v2 under vq/) or, when absent (or
#    TRAIN=1), trains MAGVIT-v2 + Show-o with the project's recipes; the tiny judges (ORM, PRM, PARM, PARM++) and the
#    self-correction Show-o are loaded from checkpoints/shapes/<name> when there, else trained under RUN/train/; the DPO
#    models come from one 2-round iterative-DPO run;
# 2. writes the held-out eval split as GenEval metadata and renders its ground truth;
# 3. produces each row of the table (reference rows: rendered ground truth, random codes; then the methods) and judges
#    every image folder with the GenEval judge + exact shapes detector;
# 4. prints the table (per task + overall + number of images) and writes table.md/json, scaling.png, candidates.png.
# A finished step is skipped on re-run (resume).
set -euo pipefail
cd "$(dirname "$0")/../.."

RUN=${1:-runs/shapes/quickstart}
QUICK=${QUICK:-0}
TRAIN=${TRAIN:-0}
DATA=shapes32
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}  # 2 cores: the 192-wide Show-o samples ~1.4x faster with 2 threads
export HYDRA_FULL_ERROR=1
CLI=(python scripts/shapes/shapes_cli.py)
START=$(date +%s)

if [[ "$QUICK" == 1 ]]; then
  PREPARE_ARGS=(--prompts-per-task 1)
  MAGVIT_ARGS=(max_steps=30 train_images_per_prompt=2 eval_images_per_prompt=1 tokenize.images_per_prompt=2 tokenize.images_per_tag=16 checkpoint_every=30)
  SHOWO_ARGS=(max_steps=30 checkpoint_every=30 per_device_batch_size=8)
  JUDGE_DATA_ARGS=(--images-per-prompt 1 --source split)
  JUDGE_ARGS=(max_steps=20 checkpoint_every=20)
  CORRECTOR_ARGS=(max_steps=4 checkpoint_every=4 per_device_batch_size=4)
  DPO_ARGS=(iterative.candidates_per_prompt=2 train.max_steps=2 train.per_device_batch_size=2)
  STEPS=4
  CANDIDATES=2
else
  JUDGE_DATA_ARGS=()
  JUDGE_ARGS=()
  CORRECTOR_ARGS=()
  DPO_ARGS=()
  CANDIDATES=4
  PREPARE_ARGS=()
  MAGVIT_ARGS=()
  SHOWO_ARGS=()
  STEPS=12
fi
mkdir -p "$RUN"
echo "== shapes world quickstart: run dir $RUN (QUICK=$QUICK, TRAIN=$TRAIN, OMP_NUM_THREADS=$OMP_NUM_THREADS)"

# ---- 1. models
MAGVIT=${SHAPES_MAGVIT:-checkpoints/shapes/showo/vq}  # the Show-o bundle carries its tokenizer
SHOWO=${SHAPES_SHOWO:-checkpoints/shapes/showo}
if [[ "$TRAIN" == 1 || ! -f "$MAGVIT/pytorch_model.safetensors" ]]; then
  echo "== training the tiny MAGVIT-v2 ($RUN/train/magvit)"
  python scripts/train_magvit.py +experiment=shapes/magvit output_dir="$RUN/train/magvit" "${MAGVIT_ARGS[@]}"
  MAGVIT=$RUN/train/magvit/final
fi
if [[ "$TRAIN" == 1 || ! -f "$SHOWO/showo/config.json" ]]; then
  TOKENS=$RUN/train/magvit/tokens
  if [[ ! -f "$TOKENS/codes.safetensors" ]]; then
    TOKENS=$RUN/train/tokens
    [[ -f "$TOKENS/codes.safetensors" ]] || "${CLI[@]}" tokenize --vq "$MAGVIT" --data $DATA --out "$TOKENS"
  fi
  echo "== training the tiny Show-o ($RUN/train/showo)"
  SHAPES_MAGVIT=$MAGVIT python scripts/train_showo.py +experiment=shapes/showo output_dir="$RUN/train/showo" \
    dataset.directory="$TOKENS" "${SHOWO_ARGS[@]}"
  SHOWO=$RUN/train/showo/final
fi
echo "== models: MAGVIT-v2 $MAGVIT, Show-o $SHOWO"

# ---- 2. prompts and ground truth
[[ -f "$RUN/data.json" ]] || "${CLI[@]}" prepare --data $DATA --out "$RUN" "${PREPARE_ARGS[@]}"
PROMPTS=$RUN/prompts/evaluation_metadata.jsonl
NAMES=$RUN/prompts/object_names.txt

evaluate() {  # evaluate NAME IMAGE_DIR [FORWARD_PASSES]
  local extra=()
  [[ -n "${3:-}" ]] && extra=(--forward-passes "$3")
  [[ -f "$(dirname "$2")/eval/summary.json" ]] || "${CLI[@]}" evaluate --run "$RUN" --images "$2" --name "$1" "${extra[@]}"
}

# ---- 3. rows: each is RUN/rows/KEY/images, judged into RUN/rows/KEY/eval, then a table row and a grid column
ROWS=()
GRID=()
add_row() {  # add_row NAME KEY [FORWARD_PASSES]
  evaluate "$1" "$RUN/rows/$2/images" "${3:-}"
  ROWS+=("$1=$RUN/rows/$2/eval/summary.json")
  GRID+=("$2=$RUN/rows/$2/images")
}
generate_row() {  # generate_row NAME KEY SHOWO_DIR: plain sampling of a Show-o
  python scripts/generate.py +experiment=shapes/generate model.bundle.directory="$3" prompts="$PROMPTS" \
    class_names="$NAMES" output_dir="$RUN/rows/$2" model.sampling.num_inference_steps=$STEPS grid=false
  add_row "$1" "$2" $STEPS
}
add_row "rendered ground truth (reference)" ground_truth

[[ -d "$RUN/rows/chance/images" ]] || "${CLI[@]}" chance --vq "$MAGVIT" --run "$RUN" --out "$RUN/rows/chance/images"
add_row "random codes (chance)" chance

generate_row "Show-o (baseline)" baseline "$SHOWO"

# ---- judges: tiny LLaVA-OneVision models trained on the tiny Show-o's train-split paths (labels: the GenEval judge on
# training prompts only; at test time a judge sees prompt + image, nothing else), committed or trained here.
JUDGE_DATA=$RUN/train/judge_data
judge_data() {  # the tiny Show-o's train-split paths labelled by GenEval: judge data of every task + self-correction
  [[ -f "$JUDGE_DATA/orm.jsonl" ]] || "${CLI[@]}" judge-data --showo "$SHOWO" --data $DATA --out "$JUDGE_DATA" \
    --steps $STEPS "${JUDGE_DATA_ARGS[@]}"
}
judge() {  # judge NAME (orm|prm|parm|parmpp) -> sets JUDGE_DIR: the committed checkpoint, or trains it (shapes/judge_NAME)
  local name=$1 var dir
  var=SHAPES_${name^^}
  dir=${!var:-checkpoints/shapes/$name}
  if [[ "$TRAIN" == 1 || ! -f "$dir/config.json" ]]; then
    judge_data
    [[ -f "$RUN/train/tiny_llava/config.json" ]] || "${CLI[@]}" tiny-judge --out "$RUN/train/tiny_llava"
    dir=$RUN/train/$name/final
    if [[ ! -f "$dir/config.json" ]]; then
      echo "== training the tiny ${name^^} judge ($RUN/train/$name)"
      SHAPES_JUDGE_DATA=$JUDGE_DATA python scripts/train_judge.py +experiment=shapes/judge_$name \
        model_dir="$RUN/train/tiny_llava" output_dir="$RUN/train/$name" "${JUDGE_ARGS[@]}"
    fi
  fi
  JUDGE_DIR=$dir
}
search_row() {  # search_row NAME KEY EXPERIMENT SHOWO_DIR [overrides...]: scripts/search.py (passes from its cost.json)
  local name=$1 key=$2 experiment=$3 model=$4
  shift 4
  python -P scripts/search.py +experiment=shapes/$experiment model.bundle.directory="$model" \
    prompts="$PROMPTS" class_names="$NAMES" output_dir="$RUN/rows/$key" model.sampling.num_inference_steps=$STEPS "$@"
  add_row "$name" "$key"
}

# + ORM (paper §4): best-of-N ranked by the tiny fine-tuned ORM.
judge orm
ORM=$JUDGE_DIR
search_row "+ ORM (best-of-$CANDIDATES)" orm best_of_n "$SHOWO" reward.judge.model_dir="$ORM" \
  search.strategy.num_candidates=$CANDIDATES

# + PRM (paper §5): step-level search, every step N continuations of the kept path, scored by the tiny fine-tuned PRM.
judge prm
search_row "+ PRM (step-level, $CANDIDATES paths)" prm search_prm "$SHOWO" reward.judge.model_dir="$JUDGE_DIR" \
  search.strategy.num_paths=$CANDIDATES search.strategy.expansion=$CANDIDATES

# + PARM (paper §6): clarity judgment -> potential assessment (pruned paths stop) -> best-of-N' of the survivors.
judge parm
PARM=$JUDGE_DIR
search_row "+ PARM ($CANDIDATES paths)" parm search_parm "$SHOWO" reward.judge.model_dir="$PARM" \
  search.strategy.num_candidates=$CANDIDATES

# + PARM++ (paper §7): PARM with the tiny PARM++ judge, then reflection: on "no" its explanation and the rejected image
# go to a self-correction fine-tuned copy of the tiny Show-o (committed, or fine-tuned here on the judge data's groups).
judge parmpp
PARMPP=$JUDGE_DIR
CORRECTOR=${SHAPES_CORRECTOR:-checkpoints/shapes/corrector}
if [[ "$TRAIN" == 1 || ! -f "$CORRECTOR/showo/config.json" ]]; then
  judge_data
  if [[ ! -f "$RUN/train/corrector/final/showo/config.json" ]]; then
    echo "== self-correction fine-tuning of the tiny Show-o ($RUN/train/corrector)"
    SHAPES_SHOWO=$SHOWO SHAPES_JUDGE_DATA=$JUDGE_DATA python -P scripts/train_showo.py +experiment=shapes/self_correction \
      output_dir="$RUN/train/corrector" "${CORRECTOR_ARGS[@]}"
  fi
  CORRECTOR=$RUN/train/corrector/final
fi
search_row "+ PARM++ ($CANDIDATES paths)" parmpp search_parmpp "$SHOWO" \
  reward.parm.judge.model_dir="$PARMPP" search.corrector="$CORRECTOR" search.strategy.num_candidates=$CANDIDATES

# + DPO / + iterative DPO (paper §8.1): the tiny Show-o generates candidates for the train-split prompts, the tiny ORM
# scores them, best-vs-worst pairs train it. One two-round run gives both rows: its round 0 is the DPO model (shapes/dpo,
# same seed and data), round 1 the iterative-DPO model. Taken from SHAPES_DPO / SHAPES_ITERATIVE_DPO when both are set.
if [[ "$TRAIN" == 0 && -n "${SHAPES_DPO:-}" && -n "${SHAPES_ITERATIVE_DPO:-}" ]]; then
  DPO=$SHAPES_DPO
  ITER=$SHAPES_ITERATIVE_DPO
else
  echo "== iterative DPO of the tiny Show-o, 2 rounds ($RUN/train/iterative_dpo)"  # finished stages are skipped
  python scripts/iterative_dpo.py +experiment=shapes/iterative_dpo model.bundle.directory="$SHOWO" \
    iterative.judge.judge.model_dir="$ORM" iterative.prompts="$RUN/prompts/train_prompts.txt" \
    run_dir="$RUN/train/iterative_dpo" "${DPO_ARGS[@]}"
  DPO=$RUN/train/iterative_dpo/round_0/train/final
  ITER=$RUN/train/iterative_dpo/round_1/train/final
fi
generate_row "+ DPO" dpo "$DPO"
generate_row "+ iterative DPO" iterative_dpo "$ITER"

# integrated (paper Table 1, last row): the iterative-DPO model searched with PARM.
search_row "+ iterative DPO + PARM" integrated search_parm "$ITER" reward.judge.model_dir="$PARM" \
  search.strategy.num_candidates=$CANDIDATES

# ---- 4. table
"${CLI[@]}" table --run "$RUN" "${ROWS[@]/#/--row=}" "${GRID[@]/#/--grid=}"
echo "== quickstart finished in $(( $(date +%s) - START )) s"
