"""The LLM-API variant of the model repository: ``fleet render --llm-path llmapi --output DIR [--plan NAME]``.

The repository's LLM pipeline runs TensorRT-LLM's engine path (``inflight_batcher_llm``). The variant
(:func:`write_variant`) is a repository in ``DIR`` whose LLM is NVIDIA's LLM-API model instead, behind an
adapter that keeps every name clients call (:mod:`tritonfleet.pipelines.llm.llmapi`):

- the models the variant changes (:func:`own_models`) are written there: configs rendered from their
  declarations, ``tensorrt_llm/1/model.yaml`` (the plan's KV-cache cap and parallelism, from
  ``tensorrt_llm/configs/NAME.llmapi.yaml`` that ``fleet plan`` wrote; without ``--plan`` the engine path's
  own cap), links to the image's llmapi ``model.py`` and ``helpers.py``, and a ``model.py`` for each of
  the adapter's models;
- every other model is a link to its folder in the source repository (artifacts, CPU and planned
  configs); the engine path's postprocessing and tensorrt_llm_passthrough are left out.

``fleet --repository DIR validate --llm-path llmapi`` checks the result against the variant's
declarations (:func:`variant_models`). ``LLM_PATH`` in docker/image.env picks the path the image serves.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from tritonfleet import spec
from tritonfleet.pipelines.llm import interface as llm
from tritonfleet.pipelines.llm import llmapi
from tritonfleet.pipelines.rag import interface as rag
from tritonfleet.plan.render import LLMAPI_SUFFIX
from tritonfleet.spec.config import rendered

ENGINE, LLMAPI = "engine", "llmapi"
LLM_PATHS = (ENGINE, LLMAPI)
MODEL_YAML = "model.yaml"
# The model.py of the adapter's models: the logic is the package's (unit-tested without a server).
ADAPTER_MODEL_PY = (
    '"""The engine path\'s client interface over the LLM-API model: '
    'tritonfleet/pipelines/llm/llmapi_adapter.py."""\n\n'
    "from tritonfleet.pipelines.llm.llmapi_adapter import TritonPythonModel\n\n"
    '__all__ = ["TritonPythonModel"]\n'
)


def own_models() -> tuple[spec.Model, ...]:
    """The models the LLM-API variant declares itself."""
    return (*llmapi.MODELS, *rag.LLMAPI_MODELS)


def variant_models() -> list[spec.Model]:
    """Every model of the LLM-API variant, by name: the declared ones, those it replaces replaced, those it
    has no use for left out."""
    mine = {m.name: m for m in own_models()}
    kept = {n: m for n, m in spec.models().items() if n not in llmapi.DROPPED}
    return [m for _, m in sorted((kept | mine).items())]


def default_model_yaml() -> dict[str, Any]:
    """``model.yaml`` without a plan: the engine path's own KV-cache cap (tensorrt_llm's GPU config)."""
    params = llm.TENSORRT_LLM.gpu.parameters
    return llmapi.model_yaml(
        kv_tokens=int(params["max_tokens_in_paged_kv_cache"]),
        kv_fraction=float(params["kv_cache_free_gpu_mem_fraction"]),
    )


def planned_model_yaml(source: Path, plan: str) -> dict[str, Any]:
    """The ``model.yaml`` that ``fleet plan --name PLAN`` wrote into ``source`` (ValueError: none)."""
    path = source / llmapi.LLMAPI.name / "configs" / f"{plan}{LLMAPI_SUFFIX}"
    if not path.is_file():
        raise ValueError(
            f"no {path}: run `fleet plan ... --name {plan}` first (a plan whose LLM is not on GPUs 0..tp-1 "
            "has none: the LLM-API model takes the first visible GPUs)"
        )
    return yaml.safe_load(path.read_text())


def write_variant(
    source: Path, output: Path, *, plan: str | None = None, llmapi_dir: str = llmapi.IMAGE_LLMAPI_DIR
) -> list[str]:
    """Write the LLM-API variant of the repository at ``source`` into ``output`` (emptied first); the
    model folders it holds. ``llmapi_dir``: where NVIDIA's llmapi ``model.py`` and ``helpers.py`` are (the
    image's copy by default; they need not exist where this runs)."""
    source, output = source.resolve(), output.resolve()
    if output == source or source.is_relative_to(output):
        raise ValueError(f"--output {output} would overwrite the source repository {source}")
    options = default_model_yaml() if plan is None else planned_model_yaml(source, plan)
    if output.exists():
        shutil.rmtree(output)
    output.mkdir(parents=True)
    models = variant_models()
    own = {m.name for m in own_models()}
    for model in models:
        if model.name not in own:
            (output / model.name).symlink_to(source / model.name, target_is_directory=True)
            continue
        (output / model.name / "1").mkdir(parents=True)
    for name, text in rendered([m for m in models if m.name in own], output).items():
        if text is not None:
            (output / name).write_text(text)
    version = output / llmapi.LLMAPI.name / "1"
    for name in llmapi.LLMAPI_FILES:
        (version / name).symlink_to(Path(llmapi_dir) / name)
    (version / MODEL_YAML).write_text(model_yaml_text(options, plan))
    for model in (llmapi.ADAPTER, llmapi.TENSORRT_LLM_BLS):
        (output / model.name / "1" / "model.py").write_text(ADAPTER_MODEL_PY)
    return [m.name for m in models]


def model_yaml_text(options: dict[str, Any], plan: str | None) -> str:
    where = (
        f"plan {plan} (tensorrt_llm/configs/{plan}{LLMAPI_SUFFIX})" if plan else "tensorrt_llm's GPU config"
    )
    return (
        "# tensorrt_llm.LLM arguments for TensorRT-LLM's llmapi Triton model (its model.py reads it),\n"
        f"# written by `fleet render --llm-path llmapi`: the KV-cache cap of {where}.\n"
        "# triton_config is the llmapi model's own (its Triton config's max_batch_size and decoupled).\n"
        + yaml.safe_dump(options, sort_keys=False)
    )
