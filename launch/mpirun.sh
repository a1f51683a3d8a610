#!/usr/bin/env bash
# Local multi-rank training of DD attention with mpirun.
#
#   bash launch/mpirun.sh                       # 2 ranks, defaults, output in runs/mpirun
#   NP=4 OUT=runs/big STEPS=20000 bash launch/mpirun.sh
#   PDDATTN_ARGS="--n 4095 --subdomains 64 --rank 8" bash launch/mpirun.sh
#
# Settings (environment variables):
#   NP            ranks (default 2; more than the cores is fine, --oversubscribe is on)
#   OUT           output folder: log.jsonl, checkpoint.pt (default runs/mpirun)
#   STEPS         training steps (default 2000)
#   DATA_PARALLEL data replicas R, must divide NP (default 1)
#   PDDATTN_ARGS  further `pddattn train` options (model size, lr, ...)
#   PYTHON        interpreter (default: the project's .venv, else python3)
#
# Re-running with the same OUT continues the run from its checkpoint; so does
# `pddattn train --resume --out $OUT`, on any number of ranks, serially too.
set -euo pipefail
cd "$(dirname "$0")/.."
NP=${NP:-2}
OUT=${OUT:-runs/mpirun}
STEPS=${STEPS:-2000}
DATA_PARALLEL=${DATA_PARALLEL:-1}
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
if [ "$(id -u)" -eq 0 ]; then   # Open MPI refuses root unless told
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
RESUME=()
[ -f "$OUT/checkpoint.pt" ] && RESUME=(--resume) && echo "resuming from $OUT/checkpoint.pt"
# shellcheck disable=SC2086  # PDDATTN_ARGS is a list of options
exec mpirun --oversubscribe -n "$NP" "$PYTHON" -m pddattn train --model dd "${RESUME[@]}" \
  --steps "$STEPS" --data-parallel "$DATA_PARALLEL" --out "$OUT" ${PDDATTN_ARGS:-}
