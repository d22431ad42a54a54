#!/usr/bin/env bash
# The paper's ablation: the NLL weight alpha and the DPO temperature beta, one iteration each;
# each job's run dir is named after its alpha and beta, the report compares them.
#   bash launchers/ablation_alpha_beta.sh                                   # embedded CPU default
#   bash launchers/ablation_alpha_beta.sh task=gsm8k model=... cluster=slurm cluster.partition=gpu
set -euo pipefail
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then  # usage: the comment above, less the shebang
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
fi
python -m irpo -m iterations=1 loss.alpha=0,0.25,0.5,1,2 loss.beta=0.05,0.1,0.5,1 "$@"
