#!/usr/bin/env bash
# Table 2 (ARC-Challenge and MATH): the rows, one sweep dir per task, report at the end.
#   bash launchers/paper_table2.sh task=arc_challenge task.data_dir=/path/to/arc model=llama2_70b_chat
#   bash launchers/paper_table2.sh task=math task.data_dir=/path/to/math model=llama2_70b_chat cluster=slurm
# As in paper_table1.sh, in waves: star and dpo train on irpo's iteration-1 pairs, and dpo_from_star
# also starts from star's model (ARC has no gold CoT, so there is no SFT-on-gold row).
set -euo pipefail
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then  # usage: the comment above, less the shebang
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
fi
sweep="outputs/sweeps/paper_arc_math-\${task.name}-$(date +%Y%m%d-%H%M%S)"
python -m irpo experiment=paper_arc_math "hydra.sweep.dir=$sweep" method=zero_shot,irpo "$@"
python -m irpo experiment=paper_arc_math "hydra.sweep.dir=$sweep" method=star,dpo "$@"
python -m irpo experiment=paper_arc_math "hydra.sweep.dir=$sweep" method=dpo_from_star "$@"
