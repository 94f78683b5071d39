#!/usr/bin/env bash
# Build the TensorRT plans and TensorRT-LLM engines this GPU lacks, then exec `fleet serve`: the front door
# on the public ports 8000 (HTTP), 8001 (gRPC) and 8002 (metrics), the image's tritonserver behind it on
# 127.0.0.1 with the GPU configs (config.pbtxt: no --model-config-name), supervised.
#
# The front door needs API keys outside localhost: mount the keys file (`fleet keys add NAME` writes it) as
# a Secret at $TRITONFLEET_KEYS (default /etc/tritonfleet/keys.json). Without one it refuses to start unless
# TRITONFLEET_INSECURE=1.
#
# Plans and engines are specific to the GPU and the TensorRT (-LLM) version, so they are built here, on the
# serving GPU, and cached under $PLAN_CACHE / $ENGINE_CACHE (volumes shared by replicas) keyed by the GPU's
# name and compute capability, the TensorRT (-LLM) version, the precision and the hash of their inputs,
# config, build script and build arguments. TRT_PRECISION=int8 builds int8 plans calibrated on the image's
# real sample inputs ($CALIBRATION/<model>.npz); TRITONFLEET_CHECK_PLANS=1 compares each new plan with
# onnxruntime on them. A TensorRT-LLM engine is built from $LLM_CHECKPOINT (the image's fp32 checkpoint)
# with $LLM_BUILD_ARGS (e.g. --tp 3 from a tensor-parallel plan) into the cache, and the model's
# gpt_model_path becomes a link to it. Extra arguments (a plan's --model-config-name=NAME, ...) are passed
# on to tritonserver.
#
# LLM_PATH (docker/image.env's, or the environment's) picks the LLM's path: engine (the above) or llmapi:
# `fleet render --llm-path llmapi` writes the repository's LLM-API variant into $LLMAPI_REPOSITORY (with
# the plan named by --model-config-name=NAME, its KV-cache cap), which is then served; it has no engine to
# build, and its other models are links into $MODEL_REPOSITORY.
set -euo pipefail

MODEL_REPOSITORY="${MODEL_REPOSITORY:-/models}"
PLAN_CACHE="${PLAN_CACHE:-/plans}"
BUILD_SCRIPT="${BUILD_SCRIPT:-/opt/tritonfleet/build/tensorrt_plan.py}"
ENGINE_CACHE="${ENGINE_CACHE:-/engines/cache}"
LLM_BUILD_SCRIPT="${LLM_BUILD_SCRIPT:-/opt/tritonfleet/build/llm/trtllm_engine.py}"
LLM_CHECKPOINT="${LLM_CHECKPOINT:-/opt/tritonfleet/checkpoints/smollm2-135m-instruct}"
LLM_BUILD_ARGS="${LLM_BUILD_ARGS:-}"
CALIBRATION="${CALIBRATION:-/opt/tritonfleet/calibration}"
TRT_PRECISION="${TRT_PRECISION:-fp16}"
IMAGE_ENV="${IMAGE_ENV:-/opt/tritonfleet/image.env}"
LLM_PATH="${LLM_PATH:-$(sed -n 's/^LLM_PATH=//p' "$IMAGE_ENV" 2>/dev/null || true)}"
LLMAPI_REPOSITORY="${LLMAPI_REPOSITORY:-/tmp/tritonfleet-llmapi}"

case "${LLM_PATH:-engine}" in
    engine) ;;
    llmapi)
        plan=()
        for arg in "$@"; do
            case "$arg" in --model-config-name=*) plan=(--plan "${arg#--model-config-name=}") ;; esac
        done
        echo "tritonfleet: LLM_PATH=llmapi: serving the LLM-API variant in $LLMAPI_REPOSITORY"
        fleet --repository "$MODEL_REPOSITORY" render --llm-path llmapi --output "$LLMAPI_REPOSITORY" "${plan[@]}"
        MODEL_REPOSITORY="$LLMAPI_REPOSITORY"
        ;;
    *) echo "tritonfleet: LLM_PATH must be engine or llmapi, not $LLM_PATH" >&2; exit 2 ;;
esac

# The GPU: its name and compute capability (sm90 for 9.0), both in every cache key.
IFS=, read -r gpu_name compute_cap < <(nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader -i 0)
gpu="$(echo "$gpu_name" | tr -c 'A-Za-z0-9.\n' '_')-sm$(echo "$compute_cap" | tr -dc '0-9')"
trt="$(python3 -c 'import tensorrt; print(tensorrt.__version__)')"
case "$TRT_PRECISION" in
    fp16) precision_args=() ;;
    int8) precision_args=(--int8) ;;
    *) echo "tritonfleet: TRT_PRECISION must be fp16 or int8, not $TRT_PRECISION" >&2; exit 2 ;;
esac

for config in "$MODEL_REPOSITORY"/*/config.pbtxt; do
    model_dir="$(dirname "$config")"
    grep -Eq '^\s*(platform:\s*"tensorrt_plan"|backend:\s*"tensorrt")' "$config" || continue
    model="$(basename "$model_dir")"
    if [[ ! -s "$model_dir/1/model.onnx" ]]; then
        echo "tritonfleet: $model: $model_dir/1/model.onnx is missing; the image's export stage makes it" >&2
        exit 1
    fi
    samples="$CALIBRATION/$model.npz"
    args=("${precision_args[@]}")
    if [[ "$TRT_PRECISION" == int8 ]]; then args+=(--calibration "$samples"); fi
    if [[ "${TRITONFLEET_CHECK_PLANS:-0}" == 1 ]]; then args+=(--check "$samples"); fi
    inputs=("$model_dir/1/model.onnx" "$config" "$BUILD_SCRIPT")
    if [[ "$TRT_PRECISION" == int8 ]]; then inputs+=("$samples"); fi
    key="$( (cat "${inputs[@]}"; echo "${args[*]}") | sha256sum | cut -c1-16)"
    plan="$PLAN_CACHE/$model/${gpu}-trt${trt}-${TRT_PRECISION}-${key}/model.plan"
    if [[ -s "$plan" ]]; then
        echo "tritonfleet: $model: cached plan $plan"
    else
        echo "tritonfleet: $model: building a $TRT_PRECISION TensorRT plan for $gpu (first start on this GPU)"
        python3 "$BUILD_SCRIPT" --model-dir "$model_dir" --output "$(dirname "$plan")" "${args[@]}"
    fi
    cp -f "$plan" "$model_dir/1/model.plan"
done

for config in "$MODEL_REPOSITORY"/*/config.pbtxt; do
    grep -Eq '^\s*backend:\s*"tensorrtllm"' "$config" || continue
    model="$(basename "$(dirname "$config")")"
    # parameters { key: "gpt_model_path", value: { string_value: "..." } } on one line, as in our configs.
    target="$(sed -nE 's/.*key:\s*"gpt_model_path".*string_value:\s*"([^"]+)".*/\1/p' "$config")"
    if [[ -z "$target" || ! -s "$LLM_CHECKPOINT/config.json" ]]; then
        echo "tritonfleet: $model: needs gpt_model_path in its config and a checkpoint in $LLM_CHECKPOINT" >&2
        exit 1
    fi
    version="$(python3 -c 'import tensorrt_llm; print(tensorrt_llm.__version__)' 2>/dev/null | tail -n 1)"
    key="$( (cat "$LLM_CHECKPOINT"/config.json "$LLM_CHECKPOINT"/*.safetensors "$config" "$LLM_BUILD_SCRIPT"
        echo "$LLM_BUILD_ARGS") | sha256sum | cut -c1-16)"
    engine="$ENGINE_CACHE/$model/${gpu}-trtllm${version}-${key}"
    if [[ -d "$engine" ]]; then
        echo "tritonfleet: $model: cached engine $engine"
    else
        echo "tritonfleet: $model: building a TensorRT-LLM engine for $gpu (first start on this GPU)"
        rm -rf "$engine.tmp"
        # shellcheck disable=SC2086  # LLM_BUILD_ARGS is a list of flags
        python3 "$LLM_BUILD_SCRIPT" --checkpoint "$LLM_CHECKPOINT" --output "$engine.tmp" $LLM_BUILD_ARGS
        mv "$engine.tmp" "$engine"  # only a finished build is ever found in the cache
    fi
    mkdir -p "$(dirname "$target")"
    ln -sfn "$engine" "$target"
done

KEYS_FILE="${TRITONFLEET_KEYS:-/etc/tritonfleet/keys.json}"
insecure=()
if [[ ! -s "$KEYS_FILE" ]]; then
    if [[ "${TRITONFLEET_INSECURE:-0}" != 1 ]]; then
        echo "tritonfleet: no API keys at $KEYS_FILE: mount the keys Secret there, or set TRITONFLEET_INSECURE=1" >&2
        exit 1
    fi
    echo "tritonfleet: TRITONFLEET_INSECURE=1: serving without API keys" >&2
    insecure=(--insecure)
fi

exec fleet --repository "$MODEL_REPOSITORY" serve \
    --target gpu \
    --tritonserver tritonserver \
    --host 0.0.0.0 \
    --http-port=8000 \
    --grpc-port=8001 \
    --metrics-port=8002 \
    --keys "$KEYS_FILE" \
    "${insecure[@]}" \
    --verbose \
    -- \
    --backend-config=python,shm-default-byte-size=16777216 \
    --backend-config=python,shm-growth-byte-size=16777216 \
    --exit-timeout-secs=30 \
    "$@"
