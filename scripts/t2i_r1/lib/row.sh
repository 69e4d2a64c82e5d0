# Sourced by the scripts/t2i_r1/*.sh rows: the settings all T2I-R1 rows share, read from the environment.
#   JANUS_PRO_7B        the base model, a local Janus-Pro-7B directory in either layout (configs/model/janus_pro_7b.yaml)
#   IMAGECOT_DATA       holds t2i_r1/geneval_and_t2i_data_final.json, T2I-R1's 7,223 training prompts (default data/)
#   IMAGECOT_CKPTS      reward-expert and evaluation weights (configs/reward/*.yaml, eval_compbench.sh, eval_wise.sh)
#   IMAGECOT_SHARED     the benchmarks' prompt files: t2i_compbench/<category>_val.txt, wise/*.json (default ../shared)
#   IMAGECOT_DEVICE     cuda (default) or cpu
#   GRPO_LAUNCHER       training launcher (default: accelerate with configs/accelerate/deepspeed_zero3_grpo.yaml, 8 GPUs)
#   GEN_LAUNCHER        generation launcher (default: accelerate launch, every visible GPU, one process each)
# A rehearsal on tiny stand-ins points these variables at local tiny checkpoints (as scripts/geneval/*.sh rehearse) and
# shortens training with overrides, e.g. bash scripts/t2i_r1/t2i_r1.sh train.max_steps=2 grpo.prompts_per_step=2.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
export IMAGECOT_DEVICE=${IMAGECOT_DEVICE:-cuda}
GRPO_LAUNCHER=${GRPO_LAUNCHER:-"accelerate launch --config_file $ROOT/configs/accelerate/deepspeed_zero3_grpo.yaml"}
GEN_LAUNCHER=${GEN_LAUNCHER:-"accelerate launch"}

# train_row RUN [train_grpo.py overrides...]: BiCoT-GRPO from Janus-Pro-7B with the official settings
# (configs/experiment/t2i_r1.yaml) into RUN/train; rerunning resumes from the newest checkpoint. Prints RUN/train/final.
train_row() {
  local run=$1
  shift
  $GRPO_LAUNCHER "$ROOT/scripts/train_grpo.py" +experiment=t2i_r1 run_dir="$run/train" "$@"
}

# bench_row NAME RUN [generate_benchmark.py overrides selecting the generator...]: T2I-CompBench (10 images per
# validation prompt) and WISE (one per prompt) images into RUN/{compbench,wise} (resumable per image), then both
# harnesses into RUN/eval_{compbench,wise}; the tables: python -m eval.t2i_compbench.report RUN/eval_compbench/...
bench_row() {
  local name=$1 run=$2
  shift 2
  for bench in compbench wise; do
    $GEN_LAUNCHER "$ROOT/scripts/generate_benchmark.py" benchmark=$bench device="$IMAGECOT_DEVICE" seed=0 \
      run_dir="$run/$bench" "$@"
  done
  bash "$ROOT/scripts/t2i_r1/eval_compbench.sh" "$run/compbench/images" "$run/eval_compbench" name="$name"
  bash "$ROOT/scripts/t2i_r1/eval_wise.sh" "$run/wise/images" "$run/eval_wise" name="$name"
}
