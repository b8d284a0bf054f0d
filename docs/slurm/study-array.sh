#!/bin/bash
# A study spread over a SLURM job array: task K of N runs the K-th slice of the grid
# (`longtail study --shard K/N`; the slices are fixed by the study file, so any task can be
# retried alone and finished runs are skipped). After the array, one job aggregates:
#   sbatch --array=1-8 docs/slurm/study-array.sh configs/long-tail.toml /data/cifar10 runs/long-tail
#   sbatch --dependency=afterany:<array job id> --wrap "longtail study configs/long-tail.toml --data /data/cifar10 --out runs/long-tail --collect"
#SBATCH --job-name=longtail-study
#SBATCH --cpus-per-task=4
#SBATCH --mem=8G
#SBATCH --time=04:00:00
set -euo pipefail
study=$1 data=$2 out=$3
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
longtail study "$study" --data "$data" --out "$out" --quiet --shard "${SLURM_ARRAY_TASK_ID}/${SLURM_ARRAY_TASK_COUNT}"
