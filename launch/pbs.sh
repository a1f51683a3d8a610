#!/usr/bin/env bash
# PBS / PBS Pro / OpenPBS batch job: distributed training of DD attention.
#
#   qsub launch/pbs.sh
#   qsub -v PDDATTN_ARGS="--n 1048575 --subdomains 4096" launch/pbs.sh
#
# Edit the #PBS lines (select = nodes, ncpus/mpiprocs = ranks per node,
# walltime, queue) for your cluster. The job is rerunnable (-r y): if it is
# requeued or resubmitted with the same OUT it finds $OUT/checkpoint.pt and
# resumes. Checkpoints are written every --checkpoint-every steps, atomically.
#
# Settings (environment variables, e.g. via qsub -v):
#   OUT            output folder (default $PBS_O_WORKDIR/runs/pbs-<job name>)
#   DATA_PARALLEL  data replicas R, must divide the rank count (default 1)
#   PDDATTN_ARGS   further `pddattn train` options
#   VENV           virtual environment to activate (default $PBS_O_WORKDIR/.venv)
#PBS -N pddattn
#PBS -l select=2:ncpus=32:mpiprocs=32
#PBS -l walltime=02:00:00
#PBS -j oe
#PBS -r y
set -euo pipefail
WORK=${PBS_O_WORKDIR:-$PWD}
cd "$WORK"
OUT=${OUT:-$WORK/runs/pbs-${PBS_JOBNAME:-pddattn}}
DATA_PARALLEL=${DATA_PARALLEL:-1}
VENV=${VENV:-$WORK/.venv}
[ -f "$VENV/bin/activate" ] && source "$VENV/bin/activate"
export OMP_NUM_THREADS=1
NP=$(wc -l < "${PBS_NODEFILE:?PBS_NODEFILE is not set: submit with qsub}")

RESUME=()
[ -f "$OUT/checkpoint.pt" ] && RESUME=(--resume) && echo "resuming from $OUT/checkpoint.pt"
# shellcheck disable=SC2086
mpiexec -n "$NP" --hostfile "$PBS_NODEFILE" python -m pddattn train --model dd "${RESUME[@]}" \
  --data-parallel "$DATA_PARALLEL" --checkpoint-every 500 --out "$OUT" ${PDDATTN_ARGS:-}
