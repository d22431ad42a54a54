#!/usr/bin/env bash
# Table 1 (GSM8K): every row, with the report (table + figures) in the sweep dir.
#   bash launchers/paper_table1.sh                                        # embedded CPU default
#   bash launchers/paper_table1.sh task=gsm8k model=llama2_70b_chat \
#       sampler=vllm trainer=deepspeed cluster=slurm cluster.partition=gpu  # the paper's setting
# Three multiruns into one sweep dir, so launchers that run jobs at once (cluster=slurm) respect what
# each row needs: the rows that sample (wave 1); the rows that train on their pairs (star, dpo: irpo's
# iteration-1 pairs D0; star_2x: irpo_2x's); the rows that also start from star's model (wave 3).
set -euo pipefail
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then  # usage: the comment above, less the shebang
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
fi
sweep="outputs/sweeps/paper_gsm8k-\${task.name}-$(date +%Y%m%d-%H%M%S)"
python -m irpo experiment=paper_gsm8k "hydra.sweep.dir=$sweep" method=zero_shot,sft_gold,irpo,irpo_2x "$@"
python -m irpo experiment=paper_gsm8k "hydra.sweep.dir=$sweep" method=star,star_2x,dpo "$@"
python -m irpo experiment=paper_gsm8k "hydra.sweep.dir=$sweep" method=dpo_from_star,irpo_from_star "$@"
