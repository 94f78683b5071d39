#!/usr/bin/env bash
# Build the TensorRT plans this GPU lacks, then exec tritonserver on /models with the GPU configs
# (config.pbtxt: no --model-config-name).
#
# Plans are specific to the GPU model and the TensorRT version, so they are built here, on the serving
# GPU, and cached under $PLAN_CACHE (a volume shared by replicas) keyed by GPU, TensorRT version and the
# hash of the ONNX model, config and build script. Extra arguments are passed on to tritonserver.
set -euo pipefail

MODEL_REPOSITORY="${MODEL_REPOSITORY:-/models}"
PLAN_CACHE="${PLAN_CACHE:-/plans}"
BUILD_SCRIPT="${BUILD_SCRIPT:-/opt/tritonfleet/build/vision/tensorrt_plan.py}"

# The GPU's name fixes its architecture (compute_cap is not queryable on the older drivers 24.10 allows).
gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader -i 0 | tr -c 'A-Za-z0-9.\n' '_')"
trt="$(python3 -c 'import tensorrt; print(tensorrt.__version__)')"

for config in "$MODEL_REPOSITORY"/*/config.pbtxt; do
    model_dir="$(dirname "$config")"
    grep -Eq '^\s*(platform:\s*"tensorrt_plan"|backend:\s*"tensorrt")' "$config" || continue
    model="$(basename "$model_dir")"
    if [[ ! -s "$model_dir/1/model.onnx" ]]; then
        echo "tritonfleet: $model: $model_dir/1/model.onnx is missing; the image's export stage makes it" >&2
        exit 1
    fi
    key="$(cat "$model_dir/1/model.onnx" "$config" "$BUILD_SCRIPT" | sha256sum | cut -c1-16)"
    plan="$PLAN_CACHE/$model/${gpu}-trt${trt}-${key}/model.plan"
    if [[ -s "$plan" ]]; then
        echo "tritonfleet: $model: cached plan $plan"
    else
        echo "tritonfleet: $model: building a TensorRT plan for $gpu (first start on this GPU)"
        python3 "$BUILD_SCRIPT" --model-dir "$model_dir" --output "$(dirname "$plan")"
    fi
    cp -f "$plan" "$model_dir/1/model.plan"
done

exec tritonserver \
    --model-repository="$MODEL_REPOSITORY" \
    --http-port=8000 \
    --grpc-port=8001 \
    --metrics-port=8002 \
    --backend-config=python,shm-default-byte-size=16777216 \
    --backend-config=python,shm-growth-byte-size=16777216 \
    --exit-timeout-secs=30 \
    "$@"
