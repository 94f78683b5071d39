"""docker/: the GPU image and its entrypoint (stand-ins for the GPU tools) agree with Triton and the pins."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tritonfleet import pipelines
from tritonfleet.deploy import image
from tritonfleet.pipelines.llm import llmapi

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
# The front door's public ports (tritonserver listens on 127.0.0.1 behind it).
PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}


def entrypoint_command() -> list[str]:
    """The ``exec fleet ... serve ...`` line of docker/entrypoint.sh, split like the shell would."""
    text = (DOCKER / "entrypoint.sh").read_text().replace("\\\n", " ")
    (line,) = [ln for ln in text.splitlines() if ln.strip().startswith("exec fleet")]
    return shlex.split(line)[1:]


def tritonserver_args(command: list[str]) -> list[str]:
    """What ``fleet serve`` passes on to tritonserver (after ``--``)."""
    return command[command.index("--") + 1 :]


def test_image_takes_every_pin_from_docker_image_env() -> None:
    """The Dockerfile declares the pins as build arguments without defaults: docker/image.env is the only
    place they are written (compose reads it as docker/.env, make image passes it)."""
    dockerfile = (DOCKER / "Dockerfile").read_text()
    pinned = image.read_env()
    declared = re.findall(r"^ARG ([A-Z_]+)(=.*)?$", dockerfile, re.MULTILINE)
    for name, default in declared:
        if name in pinned:
            assert not default, f"ARG {name} has a default: the pin belongs in docker/image.env only"
    assert {"TRITON_IMAGE", "TRITON_REPO_TAG", "TRTLLM_VERSION", "IMAGE_TRITONCLIENT"} <= {
        n for n, _ in declared
    }
    assert re.search(r"^FROM \$\{TRITON_IMAGE\}\s*$", dockerfile, re.MULTILINE)
    assert (
        '--branch "${TRITON_REPO_TAG}"' in dockerfile
        and '-DTRITON_CORE_REPO_TAG="${TRITON_REPO_TAG}"' in dockerfile
    )
    assert '--branch "v${TRTLLM_VERSION}"' in dockerfile
    assert re.search(r'^RUN pip install .*"\.\[cpu,build\]"', dockerfile, re.MULTILINE)  # the export stage
    assert (DOCKER / ".env").resolve() == (DOCKER / "image.env").resolve()
    makefile = (ROOT / "Makefile").read_text()
    assert "docker/image.env" in makefile and "--build-arg" in makefile
    for name, value in pinned.items():  # written nowhere else in docker/
        for path in DOCKER.rglob("*"):
            generated = "k8s" in path.relative_to(DOCKER).parts  # written from the pin by fleet deploy
            if path.is_file() and not generated and path.name not in ("image.env", ".env") and len(value) > 6:
                assert value not in path.read_text(errors="ignore"), (name, path)


def test_image_ships_the_console_bundled_from_its_lock_file() -> None:
    """The console's assets are git-ignored build output: the image bundles them in a stage of its own from
    package-lock.json with the set-up's own build script, and the wheel the serving stage installs has them;
    the host's bundle and npm packages never enter the build context."""
    dockerfile = (DOCKER / "Dockerfile").read_text()
    console = dockerfile.split("\nFROM ${NODE_IMAGE} AS console\n", 1)[1].split("\nFROM ", 1)[0]
    assert "RUN npm ci " in console and "RUN node build.mjs" in console
    assert "tritonfleet/console/web/package-lock.json" in console
    build = (ROOT / "tritonfleet" / "console" / "web" / "build.mjs").read_text()
    assert 'new URL("../static/", import.meta.url)' in build  # /web/build.mjs writes /static
    copy = "COPY --from=console /static /src/tritonfleet/console/static"
    assert dockerfile.index(copy) < dockerfile.index("RUN pip wheel ")
    # that the wheel then ships the bundle: tests/test_packaging.py
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {"tritonfleet/console/static", "tritonfleet/console/web/node_modules"} <= set(ignored)
    node = image.read_env()["NODE_IMAGE"]
    assert node.startswith("node:") and "-bookworm" in node


def test_entrypoint_serves_the_gpu_configs_behind_the_front_door() -> None:
    command = entrypoint_command()
    assert command[:3] == ["fleet", "--repository", "$MODEL_REPOSITORY"] and command[3] == "serve"
    serve = command[: command.index("--")]
    assert {"--target", "gpu"} <= set(serve) and serve[serve.index("--target") + 1] == "gpu"
    assert serve[serve.index("--tritonserver") + 1] == "tritonserver"  # the image's server, supervised
    assert serve[serve.index("--host") + 1] == "0.0.0.0"
    for name, port in PORTS.items():  # the public ports belong to the front door
        assert f"--{name}-port={port}" in serve
    assert serve[serve.index("--keys") + 1] == "$KEYS_FILE"
    args = tritonserver_args(command)
    assert not any(arg.startswith("--model-config-name") for arg in args)
    assert not any(arg.startswith(("--http-port", "--grpc-port", "--metrics-port")) for arg in args)
    assert any(arg.startswith("--backend-config=python,shm-default-byte-size=") for arg in args)
    assert args[-1] == "$@"
    text = (DOCKER / "entrypoint.sh").read_text()
    assert 'MODEL_REPOSITORY="${MODEL_REPOSITORY:-/models}"' in text
    assert 'KEYS_FILE="${TRITONFLEET_KEYS:-/etc/tritonfleet/keys.json}"' in text
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert "/models" in dockerfile and "docker/entrypoint.sh" in dockerfile
    assert '"/opt/tritonfleet/entrypoint.sh"]' in dockerfile
    assert "build/tensorrt_plan.py" in text


def test_image_installs_the_runtime_pinned_once_and_no_extra() -> None:
    """The serving stage installs the wheel --no-deps (its base has its own Triton client, numpy, protobuf),
    then those of the runtime's dependencies it lacks, pinned by pyproject.toml (the front door's among them),
    and the pipelines' serving requirements: no version restated, no extra (the CPU target's bundled
    tritonserver and engine, the tools, build and test are extras it never installs)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime = {re.split(r"[=<>\[]", d)[0]: d for d in pyproject["project"]["dependencies"]}
    for name in FRONT_DOOR_PACKAGES:
        assert "==" in runtime[name], runtime[name]
    extras = pyproject["project"]["optional-dependencies"]
    assert {"nvidia-pytriton", "onnxruntime-genai"} <= {re.split(r"[=<>\[]", d)[0] for d in extras["cpu"]}
    assert not {"nvidia-pytriton", "onnxruntime-genai", "matplotlib"} & runtime.keys()
    serve = (DOCKER / "Dockerfile").read_text().split("\nFROM ${TRITON_IMAGE}\n", 1)[1]
    assert "RUN python3 -m pip install --no-cache-dir --no-deps /tmp/wheels/*.whl" in serve
    assert "python3 -m tritonfleet.pipelines requirements runtime --missing" in serve
    assert "python3 -m tritonfleet.pipelines requirements serve" in serve
    assert ".whl[" not in serve and not any(f'"{name}==' in serve for name in FRONT_DOOR_PACKAGES)


FRONT_DOOR_PACKAGES = ("uvloop", "httptools", "prometheus-client")


# Stand-ins for the GPU image's tools: a GPU, TensorRT's version, the plan builder and tritonserver.
FAKE_TOOLS = {
    "nvidia-smi": 'echo "NVIDIA H100 80GB HBM3, 9.0"',
    "python3": """
if [ "$1" = -c ]; then echo 10.5.0; exit 0; fi
echo "$*" >> "$FAKE_LOG/builds"
while [ $# -gt 0 ]; do
    if [ "$1" = --output ]; then mkdir -p "$2"; echo plan > "$2/model.plan"; fi
    shift
done
""",
    "fleet": 'printf "%s\\n" "$@" > "$FAKE_LOG/fleet"',
}


@pytest.fixture
def fake_image(tmp_path: Path) -> dict[str, str]:
    """The environment docker/entrypoint.sh sees in the image, with the tools above and a small repository."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in FAKE_TOOLS.items():
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\n{body}")
        tool.chmod(0o755)
    models = tmp_path / "models"
    for model in ("efficientnet_lite0", "image_preprocess"):
        (models / model / "1").mkdir(parents=True)
        shutil.copy(ROOT / "model_repository" / model / "config.pbtxt", models / model / "config.pbtxt")
    (models / "efficientnet_lite0" / "1" / "model.onnx").write_bytes(b"onnx")
    keys = tmp_path / "secret" / "keys.json"  # the mounted Secret
    keys.parent.mkdir()
    keys.write_text('{"keys": [{"name": "ci", "sha256": "00"}]}')
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "MODEL_REPOSITORY": str(models),
        "PLAN_CACHE": str(tmp_path / "plans"),
        "BUILD_SCRIPT": str(ROOT / "build" / "tensorrt_plan.py"),
        "FAKE_LOG": str(tmp_path),
        "TRITONFLEET_KEYS": str(keys),
    }


def run_entrypoint(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = DOCKER / "entrypoint.sh"
    return subprocess.run(["bash", str(script), "--log-verbose=1"], env=env, capture_output=True, text=True)


def test_entrypoint_builds_missing_plans_once_then_serves(fake_image: dict[str, str]) -> None:
    log, models = Path(fake_image["FAKE_LOG"]), Path(fake_image["MODEL_REPOSITORY"])
    for _ in range(2):  # the second start finds the plan in the cache
        result = run_entrypoint(fake_image)
        assert result.returncode == 0, result.stderr
    builds = (log / "builds").read_text().splitlines()
    assert len(builds) == 1 and "--model-dir" in builds[0] and "image_preprocess" not in builds[0]
    (cached,) = Path(fake_image["PLAN_CACHE"], "efficientnet_lite0").iterdir()
    assert re.fullmatch(r"NVIDIA_H100_80GB_HBM3-sm90-trt10\.5\.0-fp16-[0-9a-f]{16}", cached.name)
    assert (cached / "model.plan").is_file()
    assert (models / "efficientnet_lite0" / "1" / "model.plan").read_text() == "plan\n"
    assert not (models / "image_preprocess" / "1" / "model.plan").exists()
    args = (log / "fleet").read_text().splitlines()
    assert args[:3] == ["--repository", str(models), "serve"] and args[-1] == "--log-verbose=1"
    assert args[args.index("--keys") + 1] == fake_image["TRITONFLEET_KEYS"] and "--insecure" not in args

    config = models / "efficientnet_lite0" / "config.pbtxt"
    config.write_text(config.read_text().replace("max_batch_size: 32", "max_batch_size: 16"))
    assert run_entrypoint(fake_image).returncode == 0
    assert len((log / "builds").read_text().splitlines()) == 2  # a changed config is a new plan


def test_entrypoint_int8_plans_are_calibrated_on_the_images_samples(fake_image: dict[str, str]) -> None:
    log = Path(fake_image["FAKE_LOG"])
    env = {**fake_image, "TRT_PRECISION": "int8", "CALIBRATION": str(log / "calibration")}
    (log / "calibration").mkdir()
    (log / "calibration" / "efficientnet_lite0.npz").write_bytes(b"samples")
    assert run_entrypoint(fake_image).returncode == 0
    assert run_entrypoint(env).returncode == 0
    fp16, int8 = (log / "builds").read_text().splitlines()
    assert "--int8" not in fp16 and f"--int8 --calibration {log}/calibration/efficientnet_lite0.npz" in int8
    names = sorted(p.name for p in Path(fake_image["PLAN_CACHE"], "efficientnet_lite0").iterdir())
    assert [n.split("-")[3] for n in names] == ["fp16", "int8"]  # one cache entry per precision
    result = run_entrypoint({**env, "TRT_PRECISION": "fp8"})
    assert result.returncode == 2 and "TRT_PRECISION must be fp16 or int8" in result.stderr


def test_entrypoint_refuses_to_start_without_keys_unless_insecure(fake_image: dict[str, str]) -> None:
    Path(fake_image["TRITONFLEET_KEYS"]).unlink()
    result = run_entrypoint(fake_image)
    assert result.returncode == 1 and "no API keys" in result.stderr
    assert not (Path(fake_image["FAKE_LOG"]) / "fleet").exists()
    assert run_entrypoint({**fake_image, "TRITONFLEET_INSECURE": "1"}).returncode == 0
    assert "--insecure" in (Path(fake_image["FAKE_LOG"]) / "fleet").read_text().splitlines()


def test_entrypoint_stops_without_the_onnx_export(fake_image: dict[str, str]) -> None:
    (Path(fake_image["MODEL_REPOSITORY"]) / "efficientnet_lite0" / "1" / "model.onnx").unlink()
    result = run_entrypoint(fake_image)
    assert result.returncode != 0
    assert "model.onnx is missing" in result.stderr
    assert not (Path(fake_image["FAKE_LOG"]) / "fleet").exists()


def add_llm(env: dict[str, str]) -> tuple[Path, Path]:
    """Put tensorrt_llm (GPU config, gpt_model_path moved under the test folder) and a checkpoint into the
    fake image; returns the gpt_model_path and the checkpoint."""
    tmp = Path(env["FAKE_LOG"])
    target, checkpoint = tmp / "engines" / "smollm2" / "trtllm", tmp / "checkpoint"
    model = Path(env["MODEL_REPOSITORY"]) / "tensorrt_llm"
    (model / "1").mkdir(parents=True)
    config = (ROOT / "model_repository" / "tensorrt_llm" / "config.pbtxt").read_text()
    (model / "config.pbtxt").write_text(config.replace("/engines/smollm2-135m-instruct/trtllm", str(target)))
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    (checkpoint / "model.safetensors").write_bytes(b"weights")
    env.update(
        LLM_CHECKPOINT=str(checkpoint),
        ENGINE_CACHE=str(tmp / "engines" / "cache"),
        LLM_BUILD_SCRIPT=str(ROOT / "build" / "llm" / "trtllm_engine.py"),
    )
    return target, checkpoint


def test_entrypoint_builds_the_llm_engine_once_and_links_gpt_model_path(fake_image: dict[str, str]) -> None:
    target, checkpoint = add_llm(fake_image)
    log = Path(fake_image["FAKE_LOG"])
    for _ in range(2):  # the second start finds the engine in the cache
        result = run_entrypoint(fake_image)
        assert result.returncode == 0, result.stderr
    builds = [b for b in (log / "builds").read_text().splitlines() if "trtllm_engine.py" in b]
    assert len(builds) == 1 and f"--checkpoint {checkpoint}" in builds[0]
    (cached,) = Path(fake_image["ENGINE_CACHE"], "tensorrt_llm").iterdir()  # no unfinished .tmp left
    assert re.fullmatch(r"NVIDIA_H100_80GB_HBM3-sm90-trtllm10\.5\.0-[0-9a-f]{16}", cached.name)
    assert target.is_symlink() and target.resolve() == cached.resolve()

    (checkpoint / "model.safetensors").write_bytes(b"other weights")
    assert run_entrypoint(fake_image).returncode == 0
    builds = [b for b in (log / "builds").read_text().splitlines() if "trtllm_engine.py" in b]
    assert len(builds) == 2  # new weights are a new engine, and the link follows it
    assert target.resolve() != cached.resolve() and target.resolve().parent == cached.parent

    # A tensor-parallel plan's build arguments reach the build and are part of the key.
    assert run_entrypoint({**fake_image, "LLM_BUILD_ARGS": "--tp 3"}).returncode == 0
    builds = [b for b in (log / "builds").read_text().splitlines() if "trtllm_engine.py" in b]
    assert len(builds) == 3 and builds[-1].endswith("--tp 3")


def test_entrypoint_serves_the_llmapi_variant_when_llm_path_says_so(fake_image: dict[str, str]) -> None:
    """LLM_PATH=llmapi: the entrypoint renders the LLM-API variant (the real fleet render) with the plan of
    --model-config-name, builds no engine, builds the TensorRT plans through the variant's links, and serves
    the variant."""
    add_llm(fake_image)
    log = Path(fake_image["FAKE_LOG"])
    fleet = Path(fake_image["PATH"].split(":")[0]) / "fleet"
    fleet.write_text(
        f'#!/bin/sh\nif [ "$3" = render ]; then exec {Path(sys.executable).parent / "fleet"} "$@"; fi\n'
        'printf "%s\\n" "$@" > "$FAKE_LOG/fleet"\n'
    )
    variant = log / "llmapi"
    env = {**fake_image, "LLM_PATH": "llmapi", "LLMAPI_REPOSITORY": str(variant)}
    result = run_entrypoint(env)  # no plan: the engine config's KV cap
    assert result.returncode == 0, result.stderr
    args = (log / "fleet").read_text().splitlines()
    assert args[:3] == ["--repository", str(variant), "serve"]
    assert (variant / "tensorrt_llm" / "1" / "model.yaml").is_file()
    assert "trtllm_engine.py" not in (log / "builds").read_text()
    models = Path(fake_image["MODEL_REPOSITORY"])
    assert (models / "efficientnet_lite0" / "1" / "model.plan").read_text() == "plan\n"  # through the link
    assert run_entrypoint({**env, "LLM_PATH": "vllm"}).returncode == 2
    planned = subprocess.run(
        ["bash", str(DOCKER / "entrypoint.sh"), "--model-config-name=1xl4"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert (
        planned.returncode != 0 and "fleet plan" in planned.stdout + planned.stderr
    )  # that plan was not made


def test_image_ships_what_the_llmapi_variant_links() -> None:
    """The LLM-API variant's links and paths are where the image puts them: NVIDIA's llmapi model files from
    the tag of the image's TensorRT-LLM, the checkpoint the engine path builds from."""
    dockerfile = (DOCKER / "Dockerfile").read_text()
    entrypoint = (DOCKER / "entrypoint.sh").read_text()
    line = r"^COPY --from=tensorrt-backend /trtllm/triton_backend/all_models/llmapi (\S+)$"
    copy = re.search(line, dockerfile, re.MULTILINE)
    assert copy and f"{copy.group(1)}/tensorrt_llm/1" == llmapi.IMAGE_LLMAPI_DIR
    assert (
        "triton_backend/all_models/llmapi" in dockerfile.split("sparse-checkout set", 1)[1].split("\n\n")[0]
    )
    checkpoint = re.search(r'LLM_CHECKPOINT="\$\{LLM_CHECKPOINT:-([^}]+)\}"', entrypoint).group(1)
    assert checkpoint == llmapi.CHECKPOINT
    assert image.read_env()["LLM_PATH"] in ("engine", "llmapi")


def test_entrypoint_stops_without_the_llm_checkpoint(fake_image: dict[str, str]) -> None:
    _, checkpoint = add_llm(fake_image)
    (checkpoint / "config.json").unlink()
    result = run_entrypoint(fake_image)
    assert result.returncode != 0
    assert f"a checkpoint in {checkpoint}" in result.stderr
    assert not (Path(fake_image["FAKE_LOG"]) / "fleet").exists()


def test_image_ships_what_the_llm_engine_build_needs() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    entrypoint = (DOCKER / "entrypoint.sh").read_text()
    checkpoint = re.search(r'LLM_CHECKPOINT="\$\{LLM_CHECKPOINT:-([^}]+)\}"', entrypoint).group(1)
    script = re.search(r'LLM_BUILD_SCRIPT="\$\{LLM_BUILD_SCRIPT:-([^}]+)\}"', entrypoint).group(1)
    assert checkpoint.startswith("/opt/tritonfleet/checkpoints/")
    # The export stage (WORKDIR /src) runs every image recipe; the LLM's writes the checkpoint there.
    assert (
        re.search(r"^WORKDIR /src$", dockerfile, re.MULTILINE)
        and "RUN fleet build --target image" in dockerfile
    )
    image_args = [r.args for r in pipelines.recipes("image")]
    assert any(
        args[args.index("--checkpoint-only") + 1] == "checkpoints/" + checkpoint.rsplit("/", 1)[1]
        for args in image_args
        if "--checkpoint-only" in args
    )
    assert "COPY --from=export /src/checkpoints /opt/tritonfleet/checkpoints" in dockerfile
    assert f"COPY build/llm/trtllm_engine.py {script}" in dockerfile
    assert "TRTLLM_EXAMPLES=/opt/tritonfleet/trtllm-examples" in dockerfile
    # gpt_model_path lies on the /engines volume, where the entrypoint may link it
    assert (
        '"/engines/smollm2-135m-instruct/trtllm"'
        in (ROOT / "model_repository/tensorrt_llm/config.pbtxt").read_text()
    )
    assert "VOLUME /plans /engines" in dockerfile
