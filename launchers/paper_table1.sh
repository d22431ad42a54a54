#!/usr/bin/env bash
# Table 1 (GSM8K): every row, with the report (table + figures) in the sweep dir.
#   bash launchers/paper_table1.sh                                        # embedded CPU default
#   bash launchers/paper_table1.sh task=gsm8k model=llama2_70b_chat \
#       sampler=vllm trainer=deepspeed cluster=slurm cluster.partition=gpu  # the paper's setting
# Two multiruns into one sweep dir: the *_from_star rows start from the star run's model, so on a
# launcher that runs jobs at once (cluster=slurm) they go after the first multirun has finished.
set -euo pipefail
sweep="outputs/sweeps/paper_gsm8k-\${task.name}-$(date +%Y%m%d-%H%M%S)"
python -m irpo experiment=paper_gsm8k "hydra.sweep.dir=$sweep" \
    method=zero_shot,sft_gold,star,star_2x,sft_chosen,dpo,irpo,irpo_2x "$@"
python -m irpo experiment=paper_gsm8k "hydra.sweep.dir=$sweep" method=dpo_from_star,irpo_from_star "$@"
