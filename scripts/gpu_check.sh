#!/usr/bin/env bash
# The first run on a machine with an NVIDIA GPU, Docker with the NVIDIA runtime, and this checkout:
#
#   scripts/gpu_check.sh            # IMAGE=tritonfleet-gpu:dev (built with `make image` if missing)
#   LLM_PATH=llmapi scripts/gpu_check.sh   # the same with the LLM on the LLM-API path (docs/gpu-target.md)
#
# builds the image if needed, starts it on GPU 0 with a plan the image bakes for that GPU (1xl4 where the
# GPU has the memory the plan assumes, else the unplanned GPU configs), lets its entrypoint build the
# TensorRT plans (each checked against onnxruntime on real inputs) and the TensorRT-LLM engine, then sends
# one real request per pipeline (each pipeline's own probe) and runs `fleet bench PIPELINE --url` for 30 s
# per pipeline against the front door, and `fleet tune` on the image model (Model Analyzer on the GPU).
# One line per check: "CHECK <name>: PASS|FAIL|SKIP <detail>".
# Exits non-zero when a check failed. Stops and removes the container it started.
set -uo pipefail
cd "$(dirname "$0")/.."
IMAGE="${IMAGE:-tritonfleet-gpu:dev}"
NAME="tritonfleet-gpu-check"
FLEET="${FLEET:-.venv/bin/fleet}"
READY_TIMEOUT="${READY_TIMEOUT:-2400}"
failed=0
check() {  # check NAME STATUS DETAIL
    echo "CHECK $1: $2 $3"
    [[ "$2" == FAIL ]] && failed=1
    return 0
}

if ! gpu="$(nvidia-smi --query-gpu=name,memory.total,compute_cap --format=csv,noheader,nounits -i 0 2>/dev/null)"; then
    check gpu FAIL "nvidia-smi found no GPU"; exit 1
fi
IFS=, read -r gpu_name gpu_mib gpu_cc <<< "$gpu"
check gpu PASS "$gpu_name, ${gpu_mib// /} MiB, compute capability ${gpu_cc// /}"

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    start=$SECONDS
    if make image >/tmp/gpu_check_build.log 2>&1 && docker tag "$(docker images -q tritonfleet-gpu | head -1)" "$IMAGE"; then
        check image PASS "built in $((SECONDS - start)) s"
    else
        check image FAIL "make image failed: tail /tmp/gpu_check_build.log"; exit 1
    fi
else
    check image PASS "$IMAGE present"
fi

# The baked 1xl4 plan assumes 22854 MiB usable on the GPU (its nodeAffinity); smaller GPUs serve config.pbtxt.
args=()
if (( ${gpu_mib// /} > 22854 )); then
    args=(--model-config-name=1xl4 --cuda-memory-pool-byte-size=0:67108864)
    check plan PASS "1xl4 (docker/k8s/deployment.yaml's flags)"
else
    check plan SKIP "GPU smaller than the 1xl4 plan assumes: serving the GPU configs unplanned"
fi

docker rm -f "$NAME" >/dev/null 2>&1
trap 'docker rm -f "$NAME" >/dev/null 2>&1' EXIT
docker run -d --name "$NAME" --gpus device=0 --shm-size=2g -p 8000-8002:8000-8002 \
    -e TRITONFLEET_INSECURE=1 -e TRITONFLEET_CHECK_PLANS=1 -e LLM_PATH="${LLM_PATH:-engine}" \
    -v tritonfleet-check-plans:/plans -v tritonfleet-check-engines:/engines \
    "$IMAGE" "${args[@]}" >/dev/null || { check start FAIL "docker run failed"; exit 1; }
start=$SECONDS
until curl -fsS localhost:8000/v2/health/ready >/dev/null 2>&1; do
    if ! docker inspect -f '{{.State.Running}}' "$NAME" 2>/dev/null | grep -q true; then
        check serve FAIL "the container exited: $(docker logs --tail 5 "$NAME" 2>&1 | tr '\n' ' ')"; exit 1
    fi
    if (( SECONDS - start > READY_TIMEOUT )); then check serve FAIL "not ready in ${READY_TIMEOUT} s"; exit 1; fi
    sleep 10
done
logs="$(docker logs "$NAME" 2>&1)"
check serve PASS "ready in $((SECONDS - start)) s (plans and engine built at first start)"
for model in $(grep -o 'tritonfleet: [a-z0-9_]*: building a [a-z0-9]* TensorRT plan' <<< "$logs" | cut -d' ' -f2 | tr -d :); do
    if grep -q "error: the plan does not match" <<< "$logs"; then
        check "plan $model" FAIL "differs from onnxruntime or its config"
    else
        check "plan $model" PASS "$(grep -A3 "$model" <<< "$logs" | grep -m1 -o 'max relative difference [^,]*, cosine [0-9.]*' || echo built)"
    fi
done
if [[ "${LLM_PATH:-engine}" == llmapi ]]; then check "llm engine" SKIP "LLM_PATH=llmapi: no engine"
elif grep -q "building a TensorRT-LLM engine" <<< "$logs"; then check "llm engine" PASS "built"; else check "llm engine" SKIP "cached"; fi

# One real request per pipeline: each pipeline's probe, from inside the image (its client and data).
docker exec "$NAME" python3 - <<'PY' || failed=1
from tritonfleet import pipelines
from tritonfleet.clients import FleetClient

with FleetClient("localhost:8000") as fleet:
    for name, pipeline in pipelines.registry().items():
        if pipeline.probe is None:
            print(f"CHECK request {name}: SKIP no probe declared")
            continue
        try:
            pipeline.probe(fleet)
            print(f"CHECK request {name}: PASS real answer checked")
        except Exception as exc:  # noqa: BLE001
            print(f"CHECK request {name}: FAIL {type(exc).__name__}: {exc}")
PY

# Model Analyzer's search on the GPU (fleet tune, in the container: its tritonserver on free ports beside the
# fleet's) for the image model under the 1xl4 plan on an L4; it creates Model Analyzer's venv (PyPI access)
# and needs a perf_analyzer on PATH (the NGC -py3-sdk image's, or `pip install perf-analyzer`).
if [[ ${#args[@]} -gt 0 && "$gpu_name" == *L4* ]]; then
    if docker exec "$NAME" sh -c 'command -v perf_analyzer' >/dev/null 2>&1; then
        out="$(docker exec "$NAME" fleet --repository /models tune efficientnet_lite0 --target 1xl4 --gpu L4 \
            --tritonserver /opt/tritonserver/bin/tritonserver --output /tmp/tune 2>&1)"
        if [[ $? -eq 0 ]]; then check "tune efficientnet_lite0" PASS "$(tr '\n' ' ' <<< "$out" | grep -o '[0-9.]* infer/s.*per instance')"
        else check "tune efficientnet_lite0" FAIL "$(tail -n 3 <<< "$out" | tr '\n' ' ')"; fi
    else
        check "tune efficientnet_lite0" SKIP "no perf_analyzer in the image"
    fi
else
    check tune SKIP "fleet tune runs here under the 1xl4 plan on an L4"
fi

# perf_analyzer through each pipeline's own bench, 30 s per pipeline, against the front door's gRPC.
if [[ -x "$FLEET" ]]; then
    for pipeline in $("$FLEET" --help >/dev/null 2>&1 && .venv/bin/python -c 'from tritonfleet import pipelines; print(" ".join(pipelines.registry()))'); do
        out="$("$FLEET" bench "$pipeline" --url localhost:8001 --measurement-ms 30000 --output reports/gpu-check 2>&1)"
        case $? in
            0) check "perf $pipeline" PASS "$(tail -n 1 <<< "$out")" ;;
            2) check "perf $pipeline" SKIP "its bench starts servers of its own: $(tail -n 1 <<< "$out")" ;;
            *) check "perf $pipeline" FAIL "$(tail -n 2 <<< "$out" | tr '\n' ' ')" ;;
        esac
    done
else
    check perf SKIP "no $FLEET (make setup) for perf_analyzer"
fi
exit "$failed"
