"""The interface declarations (tritonfleet/pipelines/*/interface.py) and their rendering into the repository:
each model declared once, its configs a consequence, held to it by fleet validate."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from tests.conftest import copy_repository
from tritonfleet import spec
from tritonfleet.pipelines.llm import interface as llm
from tritonfleet.pipelines.rag import interface as rag
from tritonfleet.repository import Repository
from tritonfleet.spec.config import EXTRA_TENSORS, differs, render, rendered, to_config, write
from tritonfleet.validate import validate_repository

REPO = Path(__file__).resolve().parents[1] / "model_repository"
CASES = [(name, target) for name in spec.models() for target in spec.TARGETS]


@pytest.mark.parametrize(("name", "target"), CASES)
def test_the_rendered_text_parses_into_the_config(name: str, target: str) -> None:
    model = spec.model(name)
    assert text_format.Parse(render(model, target), mc.ModelConfig()) == to_config(model, target)


def test_every_model_folder_is_declared_and_the_committed_files_are_their_rendering() -> None:
    assert set(spec.models()) == set(Repository(REPO).names())
    for file, text in rendered().items():
        path = REPO / file
        assert (path.read_text() if path.is_file() else None) == text, file


def test_a_cpu_file_exactly_where_the_cpu_config_differs() -> None:
    """Ensembles with one wiring, the tabular models, the retriever: no configs/cpu.pbtxt."""
    for name, model in spec.models().items():
        assert (REPO / name / "configs" / "cpu.pbtxt").is_file() == differs(model, spec.CPU), name
    assert not differs(spec.model("image_classifier"), spec.CPU)
    assert differs(spec.model("tokenizer"), spec.CPU)  # one instance, another queue delay


@pytest.mark.parametrize("name", list(spec.models()))
def test_cpu_and_gpu_share_the_interface(name: str) -> None:
    """Tensors, data types, dims, optional, labels, batch size, decoupled and the interface's parameters are
    the same on both targets; the CPU adds only the optional tensors that extra_tensors names."""
    gpu, cpu = (to_config(spec.model(name), t) for t in spec.TARGETS)
    extra = cpu.parameters.get(EXTRA_TENSORS)
    added = set(extra.string_value.split(",")) if extra else set()
    for field in ("input", "output"):
        mine = [t for t in getattr(cpu, field) if t.name not in added]
        assert mine == list(getattr(gpu, field)), (name, field)
        assert all(t.optional for t in cpu.input if t.name in added), name
    assert (cpu.max_batch_size, cpu.model_transaction_policy) == (
        gpu.max_batch_size,
        gpu.model_transaction_policy,
    )
    for key in spec.model(name).parameters:
        assert cpu.parameters[key] == gpu.parameters[key]


def _copy(tmp_path: Path) -> Path:
    return copy_repository(tmp_path / "model_repository")


def test_a_changed_interface_fails_validate_until_rendered(tmp_path: Path) -> None:
    """wine_sklearn's interface with another class name: the committed files are no longer its rendering, and
    validate names the model, the file, the source and the command; fleet render makes them so again."""
    root = _copy(tmp_path)
    wine = spec.model("wine_sklearn")
    renamed = dataclasses.replace(wine, parameters={**wine.parameters, "class_names": "red, white, rose"})
    models = [renamed if m.name == "wine_sklearn" else m for m in spec.models().values()]
    [problem] = validate_repository(root, models)
    assert (problem.model, problem.file) == ("wine_sklearn", "wine_sklearn/config.pbtxt")
    assert problem.message.startswith("wine_sklearn [gpu]: differs from its rendering from line ")
    assert problem.message.endswith(
        "edit tritonfleet/pipelines/tabular/interface.py, not this file, and run `fleet render`"
    )
    assert write(root, models) == ["wine_sklearn/config.pbtxt"]
    assert validate_repository(root, models) == []
    assert (
        Repository(root).config("wine_sklearn").parameters["class_names"].string_value == "red, white, rose"
    )


def test_an_edited_config_fails_validate(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    file = root / "tokenizer/configs/cpu.pbtxt"
    file.write_text(file.read_text().replace("count: 2,", "count: 3,"))
    [problem] = validate_repository(root)
    assert (problem.model, problem.file) == ("tokenizer", "tokenizer/configs/cpu.pbtxt")
    assert problem.message.startswith("tokenizer [cpu]: differs from its rendering")


def test_missing_stray_and_undeclared_files(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    (root / "minilm_l6/configs/cpu.pbtxt").unlink()
    (root / "retriever/configs").mkdir(exist_ok=True)
    (root / "retriever/configs/cpu.pbtxt").write_text((root / "retriever/config.pbtxt").read_text())
    (root / "resnet50").mkdir()
    (root / "resnet50/config.pbtxt").write_text((root / "efficientnet_lite0/config.pbtxt").read_text())
    rendering = sorted(
        str(p) for p in validate_repository(root) if "render" in p.message and p.model != "resnet50"
    )
    assert rendering == [
        "minilm_l6/configs/cpu.pbtxt: minilm_l6 [cpu]: is missing: edit tritonfleet/pipelines/text_embedding/"
        "interface.py, not this file, and run `fleet render`",
        "retriever/configs/cpu.pbtxt: retriever [cpu]: its cpu config is config.pbtxt's "
        "(tritonfleet/pipelines/rag/interface.py), so this file must go: run `fleet render`",
    ]
    assert any(
        p.file == "resnet50" and "no tritonfleet/pipelines/*/interface.py declares it" in p.message
        for p in validate_repository(root)
    )
    assert sorted(write(root)) == ["minilm_l6/configs/cpu.pbtxt", "retriever/configs/cpu.pbtxt"]
    assert not (root / "retriever/configs").exists()
    assert {p.model for p in validate_repository(root)} == {"resnet50"}


def test_a_target_may_add_optional_tensors_never_drop_one() -> None:
    tensor = spec.Tensor("x", "FP32", [1])
    deployment = spec.Deployment(backend="python", instances=1)
    with pytest.raises(ValueError, match="never drop one"):
        spec.Model("m", (tensor.but(targets=(spec.GPU,)),), (tensor,), 8, gpu=deployment)
    with pytest.raises(ValueError, match="make it optional"):
        spec.Model("m", (tensor.but(targets=(spec.CPU,)),), (tensor,), 8, gpu=deployment)
    with pytest.raises(ValueError, match="not one of"):
        spec.Tensor("x", "FLOAT", [1])


def test_a_batcher_with_priority_levels_needs_two_instances_unless_decoupled() -> None:
    tensor = spec.Tensor("x", "FP32", [1])
    one = spec.Deployment(backend="python", instances=1, batching=spec.Batching.interactive_first())
    with pytest.raises(
        ValueError, match=r"m \[gpu\]: 1 instance\(s\); a batcher with priority levels needs 2"
    ):
        spec.Model("m", (tensor,), (tensor,), 8, gpu=one)
    with pytest.raises(ValueError, match=r"m \[cpu\]: 1 instance"):
        spec.Model("m", (tensor,), (tensor,), 8, gpu=one.but(instances=2), cpu=one)
    assert (
        spec.Model("m", (tensor,), (tensor,), 8, gpu=one.but(batching=spec.Batching())).least_instances("gpu")
        == 1
    )
    # A decoupled model returns from execute before it answers (TensorRT-LLM's backend): one is enough.
    assert spec.Model("m", (tensor,), (tensor,), 8, gpu=one, decoupled=True).least_instances("gpu") == 1


def test_the_llm_chain_is_one_wiring_for_ensemble_rag_and_the_bls_model() -> None:
    """rag's last three steps are ensemble's on both targets but for the prompt, the chat-template flag and
    the sources carried through (on GPU by tensorrt_llm_passthrough, as the C++ backend has no such tensor);
    tensorrt_llm_bls calls the same models with the maps the steps are made of."""
    for target in spec.TARGETS:
        ensemble, answered = to_config(llm.ENSEMBLE, target), to_config(rag.RAG, target)
        steps, theirs = list(ensemble.ensemble_scheduling.step), list(answered.ensemble_scheduling.step[3:])
        chain = [s.model_name for s in steps]
        carrier = llm.llm_step(target, passthrough=True).name
        assert [s.model_name for s in theirs] == ["preprocessing", carrier, "postprocessing"]
        steps[1].model_name = carrier
        steps[0].input_map["QUERY"], steps[0].input_map["APPLY_CHAT_TEMPLATE"] = (
            "_PROMPT",
            "_USE_CHAT_TEMPLATE",
        )
        steps[1].input_map["passthrough_in"], steps[1].output_map["passthrough_out"] = "_SOURCES", "sources"
        assert steps == theirs, target
        bls = to_config(llm.TENSORRT_LLM_BLS, target)
        assert bls.parameters["bls_models"].string_value == ",".join(chain)
        assert bls.parameters["llm_model"].string_value == chain[1]
    # the BLS model's maps are the steps' own
    pre, step, post = llm.llm_steps(spec.CPU, llm.LLM_INPUTS, llm.LLM_OUTPUTS)
    assert {v: k for k, v in pre.input_map.items()} == llm.PREPROCESS
    assert {k: v for k, v in step.input_map.items() if not v.startswith("_")} == {
        llm.TO_LLM[n]: n for n in llm.TO_LLM
    }
    assert dict(post.output_map) == llm.FROM_POSTPROCESSING


def test_the_declarations_import_no_protobuf() -> None:
    """Model code, clients and the front door read the interfaces without protobuf or the pipelines'
    declarations (pipeline.py and what it imports)."""
    code = (
        "import sys, tritonfleet.spec as s; s.models(); "
        "bad = [m for m in sys.modules if m.startswith(('google.protobuf', 'tritonclient', 'numpy')) "
        "or m.endswith('.pipeline')]; print(bad); assert not bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
