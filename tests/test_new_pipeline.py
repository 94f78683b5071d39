"""A pipeline's code is together and nothing shared lists pipelines or their models: in a copy of the
project, a new classifier joins the tabular pipeline (one module) and a new pipeline of its own is added
(its package with its interface, client helpers, recipe, model code), by adding files only (`fleet render`
adds their configs), and both build,
validates, serve on a real tritonserver behind the front door, answer their probes and ``fleet
infer``, get fuzzed, and the new pipeline is listed on ``/v1/models`` and answers ``/v1/embeddings`` (the
tabular pipeline serves no /v1 model); ``git status`` shows additions only.
"""

from __future__ import annotations

import json
import os
import string
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import copy_repository, copy_sources

# --- a new tabular model: one module; and a new pipeline, letter_counts: texts in, letters counted out ---
NEW_FILES = {
    "tritonfleet/pipelines/tabular/models/iris_sklearn.py": '''
        """iris_sklearn: a scikit-learn LogisticRegression on its iris data."""
        from tritonfleet.pipelines.tabular import convert
        from tritonfleet.pipelines.tabular.models import TabularModel


        def dataset():
            from sklearn.datasets import load_iris

            return load_iris()


        def fit(x, y):
            from sklearn.linear_model import LogisticRegression

            return LogisticRegression(max_iter=1000, random_state=0).fit(x, y)


        MODEL = TabularModel(
            name="iris_sklearn",
            features=("sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"),
            classes=("setosa", "versicolor", "virginica"),
            dataset=dataset,
            fit=fit,
            convert=convert.sklearn,
            probe=([7.0, 3.2, 4.7, 1.4], "versicolor"),  # row 50 and its class
            doc="A logistic regression on scikit-learn's iris data, a test's classifier.",
        )
    ''',
    "tritonfleet/pipelines/letter_counts/__init__.py": '''
        """The letter_counts pipeline: texts in, how often each letter occurs out."""
    ''',
    "tritonfleet/pipelines/letter_counts/pipeline.py": '''
        """letter_counts: each text's letters a-z counted, as a unit vector, and its words."""
        from tritonfleet.artifacts import Recipe
        from tritonfleet.clients import letter_counts as client
        from tritonfleet.pipelines import Command, OpenAIModel, Pipeline


        def _arguments(parser):
            parser.add_argument("texts", nargs="+")


        def _infer(args, console):
            from tritonfleet.clients import FleetClient

            with FleetClient(args.url, protocol=args.protocol) as fleet:
                for text, vector in zip(args.texts, fleet.count_letters(args.texts)):
                    print(f"{text}: {'abcdefghijklmnopqrstuvwxyz'[int(vector.argmax())]}")
            return 0


        def _probe(fleet):
            vectors = fleet.count_letters(["aab", "zzz y"])
            assert vectors.shape == (2, 26), vectors.shape
            assert vectors[0].argmax() == 0 and vectors[1].argmax() == 25, vectors


        PIPELINE = Pipeline(
            name="letter_counts",
            summary="letters counted, a test's pipeline",
            public=(client.MODEL,),
            recipes=(
                Recipe(
                    script="build/letter_counts/alphabet.py",
                    outputs=("letter_counts/1/alphabet.txt",),
                    args=("--output", "{output}/letter_counts/1"),
                ),
            ),
            infer=Command("the most frequent letter of each text", _arguments, _infer),
            probe=_probe,
            openai=(OpenAIModel(id="letter-counts", kind="embedding", unary_model=client.MODEL),),
        )
    ''',
    "clients/letter_counts.py": '''
        """Requests of the letter_counts pipeline."""
        import numpy as np

        from tritonfleet.clients.call import Call

        MODEL = "letter_counts"


        def count_letters(texts):
            """Each text's letters a-z, counted and scaled to unit length."""
            rows = np.array([[t.encode()] for t in texts], dtype=np.object_)
            return Call(MODEL, {"TEXT": rows}, lambda result: result.as_numpy("EMBEDDING"))


        HELPERS = (count_letters,)
    ''',
    "build/letter_counts/alphabet.py": '''
        """Write the alphabet the model counts (its one artifact)."""
        import argparse
        import pathlib
        import string

        parser = argparse.ArgumentParser()
        parser.add_argument("--output", type=pathlib.Path, required=True)
        args = parser.parse_args()
        (args.output / "alphabet.txt").write_text(string.ascii_lowercase)
    ''',
    "tritonfleet/pipelines/letter_counts/interface.py": '''
        """letter_counts' model: texts in, the share of each letter out (`fleet render` writes its config)."""
        from tritonfleet.spec import Batching, Deployment, Model, Tensor

        TEXT = Tensor("TEXT", "STRING", [1])
        EMBEDDING = Tensor("EMBEDDING", "FP32", [26])
        NUM_TOKENS = Tensor("NUM_TOKENS", "INT32", [1])
        LETTER_COUNTS = Model(
            name="letter_counts",
            inputs=(TEXT,),
            outputs=(EMBEDDING, NUM_TOKENS),
            max_batch_size=8,
            gpu=Deployment(backend="python", batching=Batching()),
            doc="Letters a-z counted in each text, scaled to unit length; its words counted.",
        )
        MODELS = (LETTER_COUNTS,)
    ''',
    "model_repository/letter_counts/1/model.py": '''
        """letter_counts: TEXT -> EMBEDDING (letter counts, unit length) and NUM_TOKENS (words)."""
        from pathlib import Path

        import numpy as np
        import triton_python_backend_utils as pb_utils


        class TritonPythonModel:
            def initialize(self, args):
                folder = Path(args["model_repository"]) / args["model_version"]
                self.alphabet = (folder / "alphabet.txt").read_text().strip()

            def execute(self, requests):
                responses = []
                for request in requests:
                    texts = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
                    try:
                        words = [t.decode("utf-8").lower() for t in texts]
                    except UnicodeDecodeError:
                        error = pb_utils.TritonError("TEXT is not UTF-8", pb_utils.TritonError.INVALID_ARG)
                        responses.append(pb_utils.InferenceResponse(error=error))
                        continue
                    counts = np.array([[w.count(c) for c in self.alphabet] for w in words], np.float32)
                    counts /= np.maximum(np.linalg.norm(counts, axis=1, keepdims=True), 1e-9)
                    tokens = np.array([[len(w.split())] for w in words], np.int32)
                    responses.append(pb_utils.InferenceResponse(
                        [pb_utils.Tensor("EMBEDDING", counts), pb_utils.Tensor("NUM_TOKENS", tokens)]
                    ))
                return responses
    ''',
}

# Run in the copy, with its own package: serve the new pipeline behind the front door (with /v1), probe it,
# call it through `fleet infer` and /v1, fuzz it; print what happened as JSON.
DRIVER = """
import json, subprocess, sys, urllib.request
from pathlib import Path
from tritonfleet import pipelines
from tritonfleet.artifacts import REPOSITORY
from tritonfleet.clients import FleetClient
from tritonfleet.fleet import Fleet
from tritonfleet.server import free_port
from tritonfleet.tools import stress

new = pipelines.get("letter_counts")
work = Path(sys.argv[1])
fleet = Fleet.on_free_ports(REPOSITORY, models=["letter_counts", "tabular"], keys_path=work / "keys.json",
                            openai_port=free_port(), probe_interval=3600, log=work / "triton.log")


def correct():
    with FleetClient(fleet.http_url) as client:
        new.probe(client)
        pipelines.get("tabular").probe(client)


fleet.start()
try:
    with FleetClient(fleet.grpc_url, protocol="grpc") as client:
        new.probe(client)
        pipelines.get("tabular").probe(client)  # each classifier, iris_sklearn too
        iris = client.predict_tabular("iris_sklearn", [{"sepal length (cm)": 5.1, "sepal width (cm)": 3.5,
                                                        "petal length (cm)": 1.4, "petal width (cm)": 0.2}])

    def cli(*args):
        command = [sys.executable, "-m", "tritonfleet.cli", "infer", *args, "--url", fleet.http_url]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout

    infer = cli("letter_counts", "hello", "zz")
    described = cli("tabular", "--model", "iris_sklearn", "--describe")
    classified = cli("tabular", "--model", "iris_sklearn", "--json", "6.3,3.3,6.0,2.5")
    with urllib.request.urlopen(fleet.openai_url + "/models") as r:
        listed = [m["id"] for m in json.load(r)["data"]]
    body = json.dumps({"model": "letter-counts", "input": ["aab", "b"]}).encode()
    headers = {"Content-Type": "application/json"}
    with urllib.request.urlopen(urllib.request.Request(fleet.openai_url + "/embeddings", body, headers)) as r:
        embeddings = json.load(r)
    specs = list(fleet.access.public.models.values())
    storm = stress.run(fleet.http_url, fleet.grpc_url, specs, http_count=300, grpc_count=200,
                       correct=correct, every=100)
    alive = fleet.server.process.poll() is None
finally:
    fleet.stop()
print(json.dumps({"public": fleet.public, "infer": infer, "listed": listed, "embeddings": embeddings,
                  "iris": iris.class_names, "described": described, "classified": classified,
                  "sent": storm.sent, "failures": storm.failures, "alive": alive,
                  "fuzzed": sorted({s.name for s in specs})}))
"""


def throwaway_install(project: Path, venv: Path) -> Path:
    """A venv whose tritonfleet is ``project`` (an editable install, as `make setup` makes) over this venv's
    packages; its python, which tritonserver's Python stubs also run."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    here = [p for p in sys.path if p.endswith("site-packages")]
    (Path(glob_one(venv, "lib/python*/site-packages")) / "base.pth").write_text("\n".join(here) + "\n")
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(project)],
        check=True, capture_output=True,
    )  # fmt: skip
    return python


def glob_one(folder: Path, pattern: str) -> Path:
    (found,) = folder.glob(pattern)
    return found


def run(python: Path, project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    out = subprocess.run([python, *args], cwd=project, capture_output=True, text=True, env=env)
    assert not check or out.returncode == 0, f"{args}: {out.stdout[-3000:]}{out.stderr[-3000:]}"
    return out


def project_copy(dest: Path) -> Path:
    """The project's files in a git repository of their own (the model repository without built files)."""
    copy_sources(dest)
    copy_repository(dest / "model_repository")
    commit = ["-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "-qm", "the project"]
    for command in (["init", "-q"], ["add", "-A"], commit):
        subprocess.run(["git", *command], cwd=dest, check=True, capture_output=True)
    return dest


@pytest.mark.server
def test_a_new_model_and_a_new_pipeline_are_files_added_and_nothing_edited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "TRITONFLEET_CACHE", str(tmp_path / "cache")
    )  # the copy's artifacts are built, not found
    project = project_copy(tmp_path / "project")
    for name, text in NEW_FILES.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(textwrap.dedent(text).lstrip())
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"], cwd=project, capture_output=True, text=True
    ).stdout.splitlines()
    assert sorted(line.removeprefix("?? ") for line in status) == sorted(NEW_FILES)  # additions only

    python = throwaway_install(project, tmp_path / "venv")
    where = run(python, project, "-c", "import tritonfleet.clients as c; print(c.__file__)").stdout
    assert where.startswith(str(project))  # the copy's package, its clients too
    rendered = run(python, project, "-m", "tritonfleet.cli", "render").stdout
    assert "wrote letter_counts/config.pbtxt" in rendered and "wrote iris_sklearn/config.pbtxt" in rendered
    assert "\n2 of " in rendered  # those files only
    tabular = run(python, project, "-m", "tritonfleet.cli", "pipelines", "tabular").stdout
    assert "iris_sklearn (public)" in tabular and "model_repository/iris_sklearn/" in tabular
    listed = run(python, project, "-m", "tritonfleet.cli", "pipelines", "letter_counts").stdout
    for part in (
        "letter_counts (public)",
        "build/letter_counts/alphabet.py",
        "FleetClient.count_letters(texts)",
        "fleet infer letter_counts",
        "clients/letter_counts.py",
        "model_repository/letter_counts/",
    ):
        assert part in listed, (part, listed)
    refused = run(
        python, project, "-m", "tritonfleet.cli", "serve", "--models", "letter_counts,tabular", check=False
    )
    assert refused.returncode == 1
    for missing in (
        "letter_counts/1/alphabet.txt (run `fleet build letter_counts`)",
        "iris_sklearn/1/model.onnx (run `fleet build tabular`)",
    ):
        assert missing in refused.stdout, refused.stdout  # fmt: skip
    built = run(python, project, "-m", "tritonfleet.cli", "build", "letter_counts", "tabular").stdout
    assert "iris_sklearn: 2 file(s) for cpu: built" in built
    training = json.loads((project / "model_repository/iris_sklearn/1/training.json").read_text())
    assert training["rows"] == 150 and training["parity"]["labels_differing"] == 0
    assert (project / "model_repository/letter_counts/1/alphabet.txt").read_text() == string.ascii_lowercase
    assert "models valid" in run(python, project, "-m", "tritonfleet.cli", "validate").stdout

    result = json.loads(run(python, project, "-c", DRIVER, str(tmp_path)).stdout.splitlines()[-1])
    classifiers = ["breast_cancer_xgboost", "iris_sklearn", "wine_sklearn"]
    assert sorted(result["public"]) == sorted(result["fuzzed"]) == sorted(["letter_counts", *classifiers])
    assert result["iris"] == ["setosa"]
    assert (
        "iris_sklearn: 4 features" in result["described"]
        and "setosa, versicolor, virginica" in (result["described"])
    )
    assert json.loads(result["classified"])["class"] == "virginica"
    assert result["infer"].split() == ["hello:", "l", "zz:", "z"]
    assert result["listed"] == ["letter-counts"]  # the declared models whose Triton models are loaded
    vectors = [d["embedding"] for d in result["embeddings"]["data"]]
    assert len(vectors) == 2 and len(vectors[0]) == 26 and vectors[1][1] == pytest.approx(1.0)
    assert result["embeddings"]["usage"]["prompt_tokens"] == 2
    assert result["sent"] == 500 and result["failures"] == [] and result["alive"]
    after = subprocess.run(  # render added the config; the build wrote into ignored folders only
        ["git", "status", "--porcelain", "--untracked-files=all"], cwd=project, capture_output=True, text=True
    ).stdout.splitlines()
    configs = [
        "?? model_repository/letter_counts/config.pbtxt",
        "?? model_repository/iris_sklearn/config.pbtxt",
    ]
    assert sorted(after) == sorted([*status, *configs])
