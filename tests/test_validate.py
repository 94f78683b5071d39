"""Static repository validation: the real repository is clean, and copies with one defect each are not."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import copy_repository
from tritonfleet.server import TritonServer
from tritonfleet.validate import Problem, validate_repository

REPO = Path(__file__).resolve().parents[1] / "model_repository"
CLASSIFIER = "image_classifier/config.pbtxt"
PREPROCESS_FILES = ("image_preprocess/config.pbtxt", "image_preprocess/configs/cpu.pbtxt")
EFFICIENTNET_FILES = ("efficientnet_lite0/config.pbtxt", "efficientnet_lite0/configs/cpu.pbtxt")


def copy_repo(tmp_path: Path) -> Path:
    """A copy of the real repository, without built model artifacts."""
    root = tmp_path / "model_repository"
    copy_repository(root)
    return root


def edit(root: Path, file: str, old: str, new: str) -> None:
    path = root / file
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} is not in {file} exactly once"
    path.write_text(text.replace(old, new))


def new_problems(root: Path) -> list[Problem]:
    """The problems of the edited copy at ``root`` that the real repository does not have, the files checked
    on their own (an edited copy is no longer the rendering of the interfaces: tests/test_spec.py)."""
    baseline = set(validate_repository(REPO, models=()))
    return [p for p in validate_repository(root, models=()) if p not in baseline]


def with_edits(tmp_path: Path, *edits: tuple[str, str, str]) -> list[Problem]:
    """New problems after ``(file, old, new)`` text edits of a copy of the real repository."""
    root = copy_repo(tmp_path)
    for file, old, new in edits:
        edit(root, file, old, new)
    return new_problems(root)


def test_real_repository_is_valid() -> None:
    assert [str(p) for p in validate_repository(REPO)] == []


def test_problem_prints_one_line() -> None:
    problem = Problem("m", "m/config.pbtxt", "m: broken")
    assert str(problem) == "m/config.pbtxt: m: broken"


def test_missing_repository_is_a_problem(tmp_path: Path) -> None:
    [problem] = validate_repository(tmp_path / "nowhere")
    assert "no model folders" in problem.message


def test_unparsable_config(tmp_path: Path) -> None:
    file = EFFICIENTNET_FILES[1]
    line = (REPO / file).read_text().splitlines().index("max_batch_size: 32") + 1
    [problem] = with_edits(tmp_path, (file, "max_batch_size: 32", "max_batch_size: many"))
    assert (problem.model, problem.file) == ("efficientnet_lite0", file)
    assert problem.message.startswith(f"efficientnet_lite0: does not parse: line {line}, column 17:")


def test_wrong_name(tmp_path: Path) -> None:
    problems = with_edits(tmp_path, (PREPROCESS_FILES[0], 'name: "image_preprocess"', 'name: "preprocess"'))
    message = 'image_preprocess: name "preprocess" differs from the folder name'
    assert problems == [Problem("image_preprocess", PREPROCESS_FILES[0], message)]


def test_empty_name_is_filled_in_by_triton(tmp_path: Path) -> None:
    assert with_edits(tmp_path, (PREPROCESS_FILES[0], 'name: "image_preprocess"', "")) == []


def test_missing_model_py(tmp_path: Path) -> None:
    root = copy_repo(tmp_path)
    (root / "image_preprocess/1/model.py").unlink()
    message = 'image_preprocess: backend "python" but no model.py in version folder(s) 1'
    assert new_problems(root) == [Problem("image_preprocess", f, message) for f in PREPROCESS_FILES]


def test_missing_version_folder(tmp_path: Path) -> None:
    root = copy_repo(tmp_path)
    shutil.rmtree(root / "efficientnet_lite0/1")
    message = "efficientnet_lite0: no version folder (a numeric folder such as 1/)"
    assert new_problems(root) == [Problem("efficientnet_lite0", "efficientnet_lite0", message)]


def test_missing_label_file(tmp_path: Path) -> None:
    edit = ('label_filename: "labels.txt"', 'label_filename: "imagenet.txt"')
    problems = with_edits(tmp_path, *((f, *edit) for f in EFFICIENTNET_FILES))
    message = 'efficientnet_lite0: output "probabilities": label file "imagenet.txt" is missing'
    assert problems == [Problem("efficientnet_lite0", f, message) for f in EFFICIENTNET_FILES]


def test_cpu_gpu_interface_mismatch(tmp_path: Path) -> None:
    problems = with_edits(tmp_path, (EFFICIENTNET_FILES[1], "dims: [ 1000 ]", "dims: [ 1001 ]"))
    assert [str(p) for p in problems] == [
        "efficientnet_lite0/configs/cpu.pbtxt: efficientnet_lite0: configs/cpu.pbtxt and config.pbtxt "
        'disagree on output "probabilities": FP32 [1001] labels "labels.txt" vs FP32 [1000] labels '
        '"labels.txt"',
        # ...which also breaks the ensemble on the CPU target only.
        "image_classifier/config.pbtxt: image_classifier [cpu]: step 2 (efficientnet_lite0) "
        'output "probabilities" -> "PROBABILITIES": '
        "FP32 [1001] vs FP32 [1000] (ensemble output): shapes differ",
    ]


LLM_CPU = "tensorrt_llm/configs/cpu.pbtxt"
EXTRAS = "passthrough_in,stop_request_id,passthrough_out"


def test_extra_tensors_must_be_named(tmp_path: Path) -> None:
    """The CPU tensorrt_llm adds the stop id; only because its "extra_tensors" parameter says so."""
    problems = with_edits(tmp_path, (LLM_CPU, EXTRAS, "passthrough_in,passthrough_out"))
    assert [str(p) for p in problems] == [
        f"{LLM_CPU}: tensorrt_llm: configs/cpu.pbtxt and config.pbtxt disagree on "
        'output "stop_request_id": STRING [1] vs absent'
    ]


def test_extra_inputs_must_be_optional(tmp_path: Path) -> None:
    old = '"passthrough_in", data_type: TYPE_STRING, dims: [ -1 ], optional: true }'
    new = old.replace(", optional: true", "")
    problems = with_edits(tmp_path, (LLM_CPU, old, new))
    assert sorted(str(p) for p in problems) == [
        "ensemble/configs/cpu.pbtxt: ensemble [cpu]: step 2 (tensorrt_llm): required input "
        '"passthrough_in" is not mapped',
        f"{LLM_CPU}: tensorrt_llm: configs/cpu.pbtxt and config.pbtxt disagree on "
        'input "passthrough_in": STRING [-1] vs absent',
    ]


def test_kind_gpu_in_cpu_config(tmp_path: Path) -> None:
    file = PREPROCESS_FILES[1]
    problems = with_edits(tmp_path, (file, "KIND_CPU", "KIND_GPU"))
    assert problems == [Problem("image_preprocess", file, "image_preprocess [cpu]: KIND_GPU instance group")]


def test_kind_gpu_through_cpu_fallback(tmp_path: Path) -> None:
    root = copy_repo(tmp_path)
    (root / EFFICIENTNET_FILES[1]).unlink()
    [problem] = new_problems(root)
    assert (problem.model, problem.file) == ("efficientnet_lite0", EFFICIENTNET_FILES[0])
    assert "[cpu]: KIND_GPU instance group (no configs/cpu.pbtxt" in problem.message


def test_ensemble_step_unknown_model(tmp_path: Path) -> None:
    problems = with_edits(
        tmp_path, (CLASSIFIER, 'model_name: "efficientnet_lite0"', 'model_name: "resnet50"')
    )
    message = 'image_classifier [gpu,cpu]: step 2 (resnet50): no model "resnet50" in the repository'
    assert problems == [Problem("image_classifier", CLASSIFIER, message)]


def test_ensemble_unknown_input_key(tmp_path: Path) -> None:
    problems = with_edits(tmp_path, (CLASSIFIER, 'key: "input"', 'key: "pixels"'))
    assert [p.message for p in problems] == [
        'image_classifier [gpu,cpu]: step 2 (efficientnet_lite0) input "pixels" <- "pixel_values": '
        'efficientnet_lite0 has no input "pixels"',
        'image_classifier [gpu,cpu]: step 2 (efficientnet_lite0): required input "input" is not mapped',
    ]


def test_ensemble_unknown_output_key(tmp_path: Path) -> None:
    problems = with_edits(tmp_path, (CLASSIFIER, 'key: "probabilities"', 'key: "logits"'))
    assert [p.message for p in problems] == [
        'image_classifier [gpu,cpu]: step 2 (efficientnet_lite0) output "logits" -> "PROBABILITIES": '
        'efficientnet_lite0 has no output "logits"',
    ]


UNUSED_PIXELS = (
    'image_classifier [gpu,cpu]: step 1 (image_preprocess) output "PIXEL_VALUES" -> "pixel_values": '
    '"pixel_values" is unused (neither an ensemble output nor a step\'s input)'
)


def test_ensemble_unmapped_required_input(tmp_path: Path) -> None:
    """...which also leaves pixel_values unread and the step without an input_map: Triton refuses both."""
    problems = with_edits(tmp_path, (CLASSIFIER, 'input_map { key: "input", value: "pixel_values" }', ""))
    assert [p.message for p in problems] == [
        'image_classifier [gpu,cpu]: step 2 (efficientnet_lite0): required input "input" is not mapped',
        UNUSED_PIXELS,
        "image_classifier [gpu,cpu]: step 2 (efficientnet_lite0): no input_map",
    ]


def test_ensemble_optional_input_may_stay_unmapped(tmp_path: Path) -> None:
    """Only the wiring's consequences remain (an unread tensor, a step without inputs), not the input."""
    problems = with_edits(
        tmp_path,
        (CLASSIFIER, 'input_map { key: "input", value: "pixel_values" }', ""),
        *(
            (f, "dims: [ 3, 224, 224 ] }", "dims: [ 3, 224, 224 ], optional: true }")
            for f in EFFICIENTNET_FILES
        ),
    )
    assert [p.message for p in problems] == [
        UNUSED_PIXELS,
        "image_classifier [gpu,cpu]: step 2 (efficientnet_lite0): no input_map",
    ]


def test_ensemble_tensor_never_produced(tmp_path: Path) -> None:
    problems = with_edits(
        tmp_path, (CLASSIFIER, 'key: "input", value: "pixel_values"', 'key: "input", value: "pixels"')
    )
    message = (
        'image_classifier [gpu,cpu]: step 2 (efficientnet_lite0) input "input" <- "pixels": '
        '"pixels" is never produced'
    )
    assert problems == [Problem("image_classifier", CLASSIFIER, m) for m in (message, UNUSED_PIXELS)]


def test_ensemble_dtype_mismatch(tmp_path: Path) -> None:
    old = '{ name: "PIXEL_VALUES", data_type: TYPE_FP32'
    new = '{ name: "PIXEL_VALUES", data_type: TYPE_UINT8'
    problems = with_edits(tmp_path, *((f, old, new) for f in PREPROCESS_FILES))
    message = (
        'image_classifier [gpu,cpu]: step 2 (efficientnet_lite0) input "input" <- "pixel_values": '
        "FP32 [3,224,224] vs UINT8 [3,224,224] (step 1 (image_preprocess) output): data types differ"
    )
    assert problems == [Problem("image_classifier", CLASSIFIER, message)]


def test_ensemble_dtype_mismatch_on_one_target(tmp_path: Path) -> None:
    old = '{ name: "PIXEL_VALUES", data_type: TYPE_FP32'
    problems = with_edits(tmp_path, (PREPROCESS_FILES[1], old, old.replace("FP32", "FP16")))
    assert [p.message.split(":")[0] for p in problems] == ["image_preprocess", "image_classifier [cpu]"]
    assert problems[1].message.endswith(
        "FP32 [3,224,224] vs FP16 [3,224,224] (step 1 (image_preprocess) output): data types differ"
    )


def test_ensemble_shape_mismatch(tmp_path: Path) -> None:
    problems = with_edits(
        tmp_path, *((f, "dims: [ 3, 224, 224 ]", "dims: [ 224, 224, 3 ]") for f in PREPROCESS_FILES)
    )
    message = (
        'image_classifier [gpu,cpu]: step 2 (efficientnet_lite0) input "input" <- "pixel_values": '
        "FP32 [3,224,224] vs FP32 [224,224,3] (step 1 (image_preprocess) output): shapes differ"
    )
    assert problems == [Problem("image_classifier", CLASSIFIER, message)]


def test_ensemble_wildcard_dims_match(tmp_path: Path) -> None:
    edits = [(f, "dims: [ 3, 224, 224 ]", "dims: [ 3, -1, -1 ]") for f in EFFICIENTNET_FILES]
    assert with_edits(tmp_path, *edits) == []


def test_ensemble_batch_dim_of_non_batching_step(tmp_path: Path) -> None:
    unbatched = [(f, "max_batch_size: 32", "max_batch_size: 0") for f in EFFICIENTNET_FILES]
    problems = with_edits(tmp_path, *unbatched)
    assert [p.message.rsplit(": ", 1)[-1] for p in problems] == [
        "only one side has the implicit batch dim (max_batch_size > 0)"
    ] * 2
    # A non-batching step whose dims start with a -1 takes the ensemble's batch.
    explicit = [(f, "dims: [ 3, 224, 224 ]", "dims: [ -1, 3, 224, 224 ]") for f in EFFICIENTNET_FILES]
    explicit += [(f, "dims: [ 1000 ]", "dims: [ -1, 1000 ]") for f in EFFICIENTNET_FILES]
    assert with_edits(tmp_path / "explicit", *unbatched, *explicit) == []


def test_ensemble_output_not_produced(tmp_path: Path) -> None:
    problems = with_edits(tmp_path, (CLASSIFIER, 'value: "PROBABILITIES"', 'value: "probs"'))
    assert [p.message for p in problems] == [
        'image_classifier [gpu,cpu]: ensemble output "PROBABILITIES" is not produced by any step',
        'image_classifier [gpu,cpu]: step 2 (efficientnet_lite0) output "probabilities" -> "probs": "probs" '
        "is unused (neither an ensemble output nor a step's input)",
    ]


def test_ensemble_tensor_produced_twice(tmp_path: Path) -> None:
    problems = with_edits(tmp_path, (CLASSIFIER, 'value: "PROBABILITIES"', 'value: "pixel_values"'))
    assert (
        'image_classifier [gpu,cpu]: step 2 (efficientnet_lite0) output "probabilities" -> "pixel_values": '
        '"pixel_values" is already produced by step 1 (image_preprocess) output'
    ) in [p.message for p in problems]


def test_ensemble_cycle(tmp_path: Path) -> None:
    problems = with_edits(
        tmp_path, (CLASSIFIER, 'key: "IMAGE", value: "IMAGE"', 'key: "IMAGE", value: "PROBABILITIES"')
    )
    messages = [p.message for p in problems]
    cycle = "step 1 (image_preprocess) -> step 2 (efficientnet_lite0) -> step 1 (image_preprocess)"
    assert f"image_classifier [gpu,cpu]: dataflow cycle: {cycle}" in messages
    # The fed-back tensor also has the wrong type for step 1; a cycle is not mistaken for "never produced".
    assert not any("never produced" in m for m in messages)


@pytest.mark.parametrize("text", ["", "\xff\xfe", "platform: 3"])
def test_garbage_config_never_raises(tmp_path: Path, text: str) -> None:
    root = copy_repo(tmp_path)
    (root / CLASSIFIER).write_bytes(text.encode("latin-1"))
    assert any(p.model == "image_classifier" for p in new_problems(root))


RAG_FILES = ("rag/config.pbtxt", "rag/configs/cpu.pbtxt")
OPTIONAL_NUM_SOURCES = '"num_sources", data_type: TYPE_INT32, dims: [ 1 ], optional: true'


def test_a_model_that_speaks_an_interface_keeps_all_of_it(tmp_path: Path) -> None:
    """rag declares that it speaks ensemble's interface: dropping one of ensemble's outputs, changing an
    input's type or making an input rag adds required are each caught, on both targets."""
    changes = [
        ('  { name: "cum_log_probs", data_type: TYPE_FP32, dims: [ -1 ] },\n', ""),
        ('"max_tokens", data_type: TYPE_INT32', '"max_tokens", data_type: TYPE_INT64'),
        (OPTIONAL_NUM_SOURCES, OPTIONAL_NUM_SOURCES.removesuffix(", optional: true")),
    ]
    problems = with_edits(tmp_path, *((file, old, new) for file in RAG_FILES for old, new in changes))
    interface = sorted(str(p) for p in problems if "ensemble" in str(p) and "step" not in str(p))
    assert interface == [
        f"{file}: rag [{target}]: {message}"
        for file, target in ((RAG_FILES[0], "gpu"), (RAG_FILES[1], "cpu"))
        for message in sorted(
            [
                'input "max_tokens" is INT64 [1], "ensemble" has INT32 [1]',
                'input "num_sources" is not in "ensemble", so it must be optional',
                'speaks "ensemble" but has no output "cum_log_probs"',
            ]
        )
    ]


def test_interface_naming_an_unknown_model(tmp_path: Path) -> None:
    edits = [(f, 'string_value: "ensemble" }', 'string_value: "ensembel" }') for f in RAG_FILES]
    problems = with_edits(tmp_path, *edits)
    assert sorted(str(p) for p in problems) == [
        'rag/config.pbtxt: rag [gpu]: interface names unknown model "ensembel"',
        'rag/configs/cpu.pbtxt: rag [cpu]: interface names unknown model "ensembel"',
    ]


def test_a_speaker_need_not_carry_the_target_only_tensors(tmp_path: Path) -> None:
    """An input only the CPU ensemble has (extra_tensors): rag's CPU config, which speaks ensemble's
    interface, need not have it; were it part of the CPU ensemble's interface, rag would."""
    file, old = "ensemble/configs/cpu.pbtxt", "input [\n"
    added = old + '  { name: "cpu_only_flag", data_type: TYPE_BOOL, dims: [ 1 ], optional: true },\n'
    named = (
        'parameters { key: "extra_tensors", value: { string_value: "cpu_only_flag" } }\nensemble_scheduling {'
    )
    extra = with_edits(tmp_path / "extra", (file, old, added), (file, "ensemble_scheduling {", named))
    assert [str(p) for p in extra if p.model == "rag"] == []
    interface = with_edits(tmp_path / "interface", (file, old, added))
    assert [str(p) for p in interface if p.model == "rag"] == [
        'rag/configs/cpu.pbtxt: rag [cpu]: speaks "ensemble" but has no input "cpu_only_flag"'
    ]


def test_targets_agree_on_optional_inputs(tmp_path: Path) -> None:
    file = "tensorrt_llm_bls/configs/cpu.pbtxt"
    old = '{ name: "top_k", data_type: TYPE_INT32, dims: [ 1 ], optional: true }'
    problems = with_edits(tmp_path, (file, old, old.replace(", optional: true", "")))
    assert [str(p) for p in problems] == [
        f"{file}: tensorrt_llm_bls: configs/cpu.pbtxt and config.pbtxt disagree on "
        'input "top_k": INT32 [1] vs INT32 [1] optional'
    ]


def test_targets_agree_on_decoupled(tmp_path: Path) -> None:
    """A model that streams on one target and answers once on the other changes every client."""
    problems = with_edits(tmp_path, (LLM_CPU, "model_transaction_policy { decoupled: true }", ""))
    assert f"{LLM_CPU}: tensorrt_llm: configs/cpu.pbtxt and config.pbtxt disagree on decoupled " in str(
        problems[0]
    )
    assert str(problems[0]).endswith("(model_transaction_policy): false vs true")


def test_targets_agree_on_label_files(tmp_path: Path) -> None:
    root = copy_repo(tmp_path)
    shutil.copy(root / "efficientnet_lite0/labels.txt", root / "efficientnet_lite0/labels-v2.txt")
    edit(root, EFFICIENTNET_FILES[1], 'label_filename: "labels.txt"', 'label_filename: "labels-v2.txt"')
    assert [str(p) for p in new_problems(root)] == [
        f"{EFFICIENTNET_FILES[1]}: efficientnet_lite0: configs/cpu.pbtxt and config.pbtxt disagree on output "
        '"probabilities": FP32 [1000] labels "labels-v2.txt" vs FP32 [1000] labels "labels.txt"'
    ]


def test_ensemble_input_and_tensors_nobody_reads(tmp_path: Path) -> None:
    file = "ensemble/configs/cpu.pbtxt"
    problems = with_edits(
        tmp_path,
        (file, '{ key: "PAD_ID", value: "pad_id" },', ""),  # pad_id: declared, read by no step
        (file, '{ key: "pad_id", value: "_OUT_PAD_ID" },', ""),  # _OUT_PAD_ID: produced, read by nobody
    )
    assert [p.message for p in problems] == [
        'ensemble [cpu]: ensemble input "pad_id" is not used by any step',
        'ensemble [cpu]: step 1 (preprocessing) output "OUT_PAD_ID" -> "_OUT_PAD_ID": "_OUT_PAD_ID" is '
        "unused (neither an ensemble output nor a step's input)",
    ]


def test_ensemble_output_from_before_the_decoupled_step(tmp_path: Path) -> None:
    """The CPU ensemble's num_input_tokens taken from preprocessing (before the decoupled tensorrt_llm) beside
    the streamed outputs: what Triton refuses at load."""
    file = "ensemble/configs/cpu.pbtxt"
    lengths = '{ key: "REQUEST_INPUT_LEN", value: "_REQUEST_INPUT_LEN" }'
    fed = '{ key: "input_lengths", value: "_REQUEST_INPUT_LEN" }'
    problems = with_edits(
        tmp_path,
        (file, lengths, lengths.replace('"_REQUEST_INPUT_LEN"', '"num_input_tokens"')),
        (file, fed, fed.replace('"_REQUEST_INPUT_LEN"', '"num_input_tokens"')),
        (file, '        { key: "num_input_tokens", value: "num_input_tokens" },\n', ""),
    )
    [problem] = problems
    assert (problem.model, problem.file) == ("ensemble", file)
    assert problem.message == (
        'ensemble [cpu]: outputs come from both sides of a decoupled step ("num_input_tokens" from before '
        'any decoupled step; "batch_index", "cum_log_probs", "num_output_tokens", "output_log_probs", '
        '"text_output" from step 2 (tensorrt_llm)): Triton refuses to load that ("receives inputs '
        'originated from different decoupled models")'
    )


# A tiny repository: "source" (A = IN), "stream" (decoupled: B = A, C = A + 1, one response) and "join"
# (Z = X + Y), and ensembles wiring them. DECOUPLED_CASES: ensemble -> its steps (model, inputs, outputs), its
# outputs, and what Triton says when it refuses to load it (None: it loads).
MIXED = "receives inputs originated from different decoupled models"
MODEL_PY = {
    "source": "outputs = {'A': inputs['IN']}",
    "stream": "outputs = {'B': inputs['A'], 'C': inputs['A'] + 1}",
    "join": "outputs = {'Z': inputs['X'] + inputs['Y']}",
}
MODEL_IO = {"source": (["IN"], ["A"]), "stream": (["A"], ["B", "C"]), "join": (["X", "Y"], ["Z"])}
SOURCE = ("source", {"IN": "IN"}, {"A": "a"})  # (model, input_map, output_map)
STREAM = ("stream", {"A": "a"}, {"B": "b"})
DECOUPLED_CASES = {
    "chain": ([SOURCE, ("stream", {"A": "a"}, {"B": "b", "C": "c"})], ["b", "c"], None),
    "after_the_stream": (
        [SOURCE, ("stream", {"A": "a"}, {"B": "b", "C": "c"}), ("join", {"X": "b", "Y": "c"}, {"Z": "z"})],
        ["z"],
        None,
    ),
    "outputs_both_sides": ([SOURCE, STREAM], ["a", "b"], MIXED),
    "step_both_sides": ([SOURCE, STREAM, ("join", {"X": "a", "Y": "b"}, {"Z": "z"})], ["z"], MIXED),
    "input_and_stream": (
        [("stream", {"A": "IN"}, {"B": "b"}), ("join", {"X": "IN", "Y": "b"}, {"Z": "z"})],
        ["z"],
        MIXED,
    ),
    "two_streams": (
        [("stream", {"A": "IN"}, {"B": "b"}), ("stream", {"A": "IN"}, {"B": "b2"})],
        ["b", "b2"],
        MIXED,
    ),
    "unread_output": (
        [SOURCE, ("stream", {"A": "a"}, {"B": "b", "C": "c"})],
        ["b"],
        "ensemble tensor 'c' is unused in ensemble 'unread_output'",
    ),
}


def decoupled_repository(root: Path) -> Path:
    tensor = '{{ name: "{}", data_type: TYPE_INT32, dims: [ 1 ] }}'
    for model, (ins, outs) in MODEL_IO.items():
        (root / model / "1").mkdir(parents=True)
        policy = "model_transaction_policy { decoupled: true }" if model == "stream" else ""
        (root / model / "config.pbtxt").write_text(
            f'name: "{model}"\nbackend: "python"\nmax_batch_size: 8\n{policy}\n'
            f"input [ {', '.join(tensor.format(n) for n in ins)} ]\n"
            f"output [ {', '.join(tensor.format(n) for n in outs)} ]\n"
            "instance_group [ { count: 1, kind: KIND_CPU } ]\n"
        )
        send = (
            "sender = r.get_response_sender()\n            sender.send(response)\n"
            "            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)"
            if model == "stream"
            else "responses.append(response)"
        )
        (root / model / "1" / "model.py").write_text(
            "import triton_python_backend_utils as pb_utils\n\n\nclass TritonPythonModel:\n"
            "    def execute(self, requests):\n        responses = []\n        for r in requests:\n"
            "            inputs = {t.name(): t.as_numpy() for t in r.inputs()}\n"
            f"            {MODEL_PY[model]}\n"
            "            tensors = [pb_utils.Tensor(k, v) for k, v in outputs.items()]\n"
            "            response = pb_utils.InferenceResponse(tensors)\n"
            f"            {send}\n"
            f"        return {'None' if model == 'stream' else 'responses'}\n"
        )
    for name, (steps, outputs, _) in DECOUPLED_CASES.items():
        (root / name / "1").mkdir(parents=True)
        step_text = ", ".join(
            f'{{ model_name: "{m}", model_version: -1, '
            + " ".join(f'input_map {{ key: "{k}", value: "{v}" }}' for k, v in ins.items())
            + " "
            + " ".join(f'output_map {{ key: "{k}", value: "{v}" }}' for k, v in outs.items())
            + " }"
            for m, ins, outs in steps
        )
        (root / name / "config.pbtxt").write_text(
            f'name: "{name}"\nplatform: "ensemble"\nmax_batch_size: 8\ninput [ {tensor.format("IN")} ]\n'
            f"output [ {', '.join(tensor.format(n) for n in outputs)} ]\n"
            f"ensemble_scheduling {{ step [ {step_text} ] }}\n"
        )
    return root


def test_decoupled_flow_of_ensembles(tmp_path: Path) -> None:
    problems = validate_repository(decoupled_repository(tmp_path / "repo"), models=())
    assert {p.model for p in problems} == {name for name, (*_, refusal) in DECOUPLED_CASES.items() if refusal}
    messages = {p.model: p.message.split(": ", 1)[1] for p in problems}
    assert all(MIXED in messages[n] for n, (*_, refusal) in DECOUPLED_CASES.items() if refusal == MIXED)
    assert messages["step_both_sides"].startswith(
        'step 3 (join): inputs come from both sides of a decoupled step ("a" from before any decoupled step; '
        '"b" from step 2 (stream))'
    )
    assert messages["two_streams"].startswith(
        'outputs come from both sides of a decoupled step ("b" from step 1 (stream); "b2" from step 2 '
        "(stream))"
    )
    assert messages["unread_output"] == (
        'step 2 (stream) output "C" -> "c": "c" is unused (neither an ensemble output nor a step\'s input)'
    )


@pytest.mark.server
def test_triton_refuses_what_validate_refuses(tmp_path: Path) -> None:
    """The tiny repository on the real server: each ensemble loads exactly when validate passes it, and is
    refused for the reason validate gives."""
    root = decoupled_repository(tmp_path / "repo")
    refused = {p.model for p in validate_repository(root, models=())}
    with TritonServer.on_free_ports(root, models=list(MODEL_IO), log=tmp_path / "tritonserver.log") as server:
        loaded = {}
        for name in DECOUPLED_CASES:
            request = urllib.request.Request(
                f"http://{server.http_url}/v2/repository/models/{name}/load", b"{}"
            )
            try:
                with urllib.request.urlopen(request, timeout=60):
                    loaded[name] = ""
            except urllib.error.HTTPError as exc:
                loaded[name] = json.loads(exc.read())["error"]
    assert {name for name, error in loaded.items() if error} == refused
    log = (tmp_path / "tritonserver.log").read_text(errors="replace")  # a refusal at poll is only logged
    for name, (*_, refusal) in DECOUPLED_CASES.items():
        assert refusal is None or refusal in loaded[name] or refusal in log, (name, loaded[name])
