#!/usr/bin/env bash
# The GPU checks of paper scale in one command, about 7-8 minutes on one H100 or H200:
#   1. benchmarks/gpu_unet.py: img/s of the paper's U-Net at 512 x 512, batch 9, fp32 vs bf16 +
#      channels_last vs + torch.compile; the fraction of the measured bf16 matrix rate (goal >= 35 %
#      for one trial); each variant's peak memory beside the packing check's estimate
#   2. benchmarks/gpu_packing.py: 1, 2 and 4 trials on the GPU through the real runner (goal: 4
#      packed give >= 1.5x the total img/s of 1)
#   3. search_spaces/gpu_smoke.yaml end to end: paper widths at 512 x 512, four trials packed
# Each part has its own time limit, so a slow one does not cost the others. The 512 px CT phantom
# (360 slices, once, into data_cache/) is generated on the CPU while part 1 runs. Everything lands
# in OUT_DIR (default gpu_check/): one JSON per part, the logs, nvidia-smi's view of the GPU.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=$(mkdir -p "${1:-gpu_check}" && cd "${1:-gpu_check}" && pwd)
export SSL_STUDY_DATA_CACHE=${SSL_STUDY_DATA_CACHE:-$PWD/data_cache}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
PY=${PYTHON:-python}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/nvidia-smi.csv" 2>&1
"$PY" -c 'from study.data import PhantomSettings, builtin_dataset; print(builtin_dataset("ct", PhantomSettings.default("ct", size=512)))' \
    > "$OUT/phantom.log" 2>&1 &
phantom=$!

echo "== 1/3 gpu_unet (limit 200 s)"
timeout 200 "$PY" benchmarks/gpu_unet.py --warmup 3 --steps 10 --json-out "$OUT/gpu_unet.json" 2>&1 | tee "$OUT/gpu_unet.log"
echo "gpu_unet exit ${PIPESTATUS[0]}"

wait "$phantom"; echo "phantom exit $? ($(tail -1 "$OUT/phantom.log"))"

echo "== 2/3 gpu_packing (limit 240 s)"
timeout 240 "$PY" benchmarks/gpu_packing.py --json-out "$OUT/gpu_packing.json" --out "$OUT" 2>&1 | tee "$OUT/gpu_packing.log"
echo "gpu_packing exit ${PIPESTATUS[0]}"

echo "== 3/3 gpu_smoke (limit 150 s)"
start=$(date +%s)
timeout 150 "$PY" -m study.run search_spaces/gpu_smoke.yaml --set "storage=$OUT/studies" \
    --set "tracking_uri=sqlite:///$OUT/mlflow.db" 2>&1 | tee "$OUT/gpu_smoke.log"
echo "gpu_smoke exit ${PIPESTATUS[0]} after $(( $(date +%s) - start )) s" | tee -a "$OUT/gpu_smoke.log"
