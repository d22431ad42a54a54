#!/usr/bin/env bash
# Table 1 (GSM8K): every row as one multirun; the report (table + figures) lands in the sweep dir.
# On the embedded CPU default:  bash launchers/paper_table1.sh
# The paper's setting:           bash launchers/paper_table1.sh task=gsm8k model=llama2_70b_chat
set -euo pipefail
python -m irpo experiment=paper_gsm8k "$@"
