#!/bin/bash
# Dream every picture under frames/ into dreams/ with a Slurm job array: each array task
# takes its share from SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT (no option needed).
# Every picture is done exactly once; resubmitting the array skips what is finished.
#
#   sbatch deploy/slurm-array.sh
#
#SBATCH --job-name=deepdream
#SBATCH --array=0-7
#SBATCH --cpus-per-task=4
#SBATCH --mem=6G
#SBATCH --time=04:00:00
#SBATCH --output=deepdream-%A_%a.log
set -euo pipefail

# With Apptainer/Singularity and the image built from deploy/Dockerfile:
#   srun apptainer run deepdream.sif batch frames --output dreams --seed 1
srun deepdream --threads "${SLURM_CPUS_PER_TASK}" batch frames --output dreams --seed 1

# One film instead, each task dreaming one part (split at scene cuts or cross-faded):
#   srun deepdream video film.mp4 --output dreams/film.mp4 --shards 8 --seed 1
# then, once every task has finished (e.g. sbatch --dependency=afterok:JOBID):
#   deepdream video-join --output dreams/film.mp4
