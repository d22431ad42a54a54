#!/usr/bin/env bash
# Table 2 (ARC-Challenge and MATH): the rows as one multirun per task.
#   bash launchers/paper_table2.sh task=arc_challenge task.data_dir=/path/to/arc model=llama2_70b_chat
#   bash launchers/paper_table2.sh task=math task.data_dir=/path/to/math model=llama2_70b_chat
set -euo pipefail
python -m irpo experiment=paper_arc_math "$@"
