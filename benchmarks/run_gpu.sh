#!/usr/bin/env bash
# The GPU benchmarks of the README, as one script: bench_model in float64 and float32 at N = 1e6
# and 1e7, and `levelfield calibrate` at N = 1e6. Results go to ${OUT:-benchmarks/results/gpu}.
#   JAX_PLATFORMS=cuda bash benchmarks/run_gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results/gpu}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia_smi.txt"
python3 -c "import jax, jaxlib; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__, jax.devices())" | tee "$OUT/jax.txt"
timeout 240 python3 benchmarks/bench_model.py --sizes 1000000 10000000 --repeats 3 \
    --out "$OUT/bench_model_gpu_float64.json"
timeout 180 python3 benchmarks/bench_model.py --sizes 1000000 10000000 --repeats 3 --precision float32 \
    --out "$OUT/bench_model_gpu_float32.json"
if python3 -c "import optax, pandas, rich, matplotlib, statsmodels, scipy" 2>/dev/null; then
    for run in first second; do  # a new process each time: empty, then warm compilation cache
        start=$(date +%s%N)
        LEVELFIELD_CACHE_DIR="$OUT/xla-cache" timeout 300 python3 -m estimation.cli calibrate --agents 1000000 \
            --firms 1000 --starts 1 --flip-checks 0 --sim-sets 8 --quiet --out "$OUT/calibrate_1e6_$run" --force
        echo "calibrate N=1e6 $run run: $(( ($(date +%s%N) - start) / 1000000 )) ms" | tee -a "$OUT/calibrate_wall.txt"
    done
    rm -rf "$OUT/xla-cache"
else
    echo "calibration skipped: optax/pandas/rich/matplotlib/statsmodels/scipy not importable here" | tee "$OUT/calibrate_wall.txt"
fi
