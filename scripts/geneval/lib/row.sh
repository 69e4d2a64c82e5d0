# Sourced by every scripts/geneval/*.sh: the settings all Table 1 rows share, read from the environment.
#   GENEVAL_METADATA           GenEval's evaluation_metadata.jsonl, the prompts that are generated AND scored
#                              (default $IMAGECOT_CACHE/geneval/evaluation_metadata.jsonl, IMAGECOT_CACHE=~/.cache/imagecot)
#   GENEVAL_IMAGES_PER_PROMPT  samples per prompt (GenEval: 4)
#   IMAGECOT_DEVICE            cuda (default) or cpu; the configs of the judges, detector and CLIP read it too
#   IMAGECOT_CKPTS             judge and evaluation weights (default ckpts/)
#   SHOWO_CKPT / MAGVIT_CKPT / PHI_TOKENIZER   the official Show-o checkpoints (configs/model/showo_256.yaml)
# A rehearsal on tiny stand-ins sets all of them: scripts/make_rehearsal_checkpoints.py (docs/rehearsal.md).
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
META=${GENEVAL_METADATA:-${IMAGECOT_CACHE:-$HOME/.cache/imagecot}/geneval/evaluation_metadata.jsonl}
IMAGES=${GENEVAL_IMAGES_PER_PROMPT:-4}
export IMAGECOT_DEVICE=${IMAGECOT_DEVICE:-cuda}

# search_row NAME RUN [run_search.py overrides...]: the GenEval prompts x IMAGES samples with a test-time strategy
# (scripts/run_search.py, resumable per slot), then the GenEval harness on those images and that metadata.
search_row() {
  local name=$1 run=$2
  shift 2
  python "$ROOT/scripts/run_search.py" prompts="$META" images_per_prompt="$IMAGES" seed=0 run_dir="$run/search" "$@"
  bash "$ROOT/scripts/geneval/evaluate.sh" "$run/search/images" "$run/eval" name="$name"
}

# dpo_rounds RUN ROUNDS [iterative_dpo.py overrides...]: ROUNDS rounds of iterative DPO into RUN (generate N=20 per
# DPO_PROMPTS line -> fine-tuned ORM -> yes/no pairs -> train), resumable per stage. The paper's global batch of 10
# pairs must split evenly over the training processes: DPO_PROCESSES (default 5; 8 GPUs cannot all be used: 5 x 2,
# 2 x 5 or 10 x 1 pairs can), or LAUNCHER (the whole launcher; null: this Python, one process).
# scripts/iterative_dpo.py refuses a process count that does not divide train.global_batch_size before generating.
dpo_rounds() {
  local run=$1 rounds=$2
  shift 2
  local prompts=${DPO_PROMPTS:?set DPO_PROMPTS to a text file of training prompts}
  local launcher=${LAUNCHER:-"[accelerate,launch,--config_file,$ROOT/configs/accelerate/ddp.yaml,--num_processes,${DPO_PROCESSES:-5}]"}
  python "$ROOT/scripts/iterative_dpo.py" model=showo_256 device="$IMAGECOT_DEVICE" reward@iterative.judge=orm_finetuned \
    iterative.prompts="$prompts" iterative.rounds="$rounds" iterative.launcher="$launcher" run_dir="$run" "$@"
}
