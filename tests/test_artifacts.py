"""`fleet build`: recipes run once, their outputs are cached by content hash and reinstalled from cache."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tritonfleet import artifacts, pipelines
from tritonfleet.artifacts import REPOSITORY, BuildError, Recipe
from tritonfleet.pipelines.loading import missing_artifacts, models_to_load

COUNTING_RECIPE = """
import argparse, pathlib
parser = argparse.ArgumentParser()
parser.add_argument("--output", type=pathlib.Path)
args = parser.parse_args()
runs = pathlib.Path(__file__).with_name("runs.txt")
runs.write_text(runs.read_text() + "x" if runs.exists() else "x")
(args.output / "model.bin").write_bytes(pathlib.Path(__file__).with_name("weights.txt").read_bytes())
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throwaway project root, repository and cache, with one real recipe script."""
    root = tmp_path / "project"
    (root / "build").mkdir(parents=True)
    (root / "build" / "recipe.py").write_text(COUNTING_RECIPE)
    (root / "build" / "weights.txt").write_text("v1")
    monkeypatch.setattr(artifacts, "PROJECT_ROOT", root)
    monkeypatch.setattr(artifacts, "REPOSITORY", root / "model_repository")
    monkeypatch.setenv("TRITONFLEET_CACHE", str(tmp_path / "cache"))
    return root


def recipe(script: str = "build/recipe.py") -> Recipe:
    return Recipe(
        script=script,
        outputs=("toy/1/model.bin",),
        args=("--output", "{output}/toy/1"),
        sources=("build/weights.txt",),
    )


def runs(project: Path) -> int:
    path = project / "build" / "runs.txt"
    return len(path.read_text()) if path.exists() else 0


def test_build_then_current_then_reinstalled_from_cache(project: Path) -> None:
    installed = project / "model_repository" / "toy" / "1" / "model.bin"
    repository = project / "model_repository"
    assert artifacts.build(recipe(), repository, log=lambda _: None) == "built"
    assert installed.read_text() == "v1"
    assert artifacts.build(recipe(), repository, log=lambda _: None) == "current"
    installed.unlink()  # a fresh clone: the repository is empty, the cache outside it is not
    assert artifacts.build(recipe(), repository, log=lambda _: None) == "cached"
    assert installed.read_text() == "v1"
    assert runs(project) == 1


def test_changed_source_changes_the_key_and_rebuilds(project: Path) -> None:
    first = recipe().key()
    repository = project / "model_repository"
    artifacts.build(recipe(), repository, log=lambda _: None)
    (project / "build" / "weights.txt").write_text("v2")
    assert recipe().key() != first
    assert artifacts.build(recipe(), repository, log=lambda _: None) == "built"
    assert (project / "model_repository" / "toy" / "1" / "model.bin").read_text() == "v2"
    assert runs(project) == 2


def test_failing_recipe_reports_its_output_and_caches_nothing(project: Path) -> None:
    (project / "build" / "broken.py").write_text(
        "print('checking export'); raise SystemExit('diff 0.3 > 1e-4')"
    )
    with pytest.raises(BuildError, match=r"(?s)exit 1.*checking export.*diff 0.3 > 1e-4"):
        artifacts.build(recipe("build/broken.py"), project / "model_repository", log=lambda _: None)
    assert not recipe("build/broken.py").cache_dir().exists()


def test_recipe_that_writes_nothing_is_an_error(project: Path) -> None:
    (project / "build" / "lazy.py").write_text("import sys")
    with pytest.raises(BuildError, match=r"did not write \['toy/1/model.bin'\]"):
        artifacts.build(recipe("build/lazy.py"), project / "model_repository", log=lambda _: None)


def test_build_installs_into_the_repository_it_is_given(project: Path, tmp_path: Path) -> None:
    """`fleet --repository X build` builds into X, not into the project's own repository."""
    other = tmp_path / "elsewhere"
    assert artifacts.build(recipe(), other, log=lambda _: None) == "built"
    assert (other / "toy" / "1" / "model.bin").read_text() == "v1"
    assert not (project / "model_repository").exists()


def test_cli_build_uses_the_repository_option(tmp_path: Path) -> None:
    """The CLI hands --repository to the recipes (an unbuilt copy: only the cheap image export is built)."""
    from tests.conftest import copy_repository

    repo = copy_repository(tmp_path / "repo")
    out = subprocess.run(
        [sys.executable, "-m", "tritonfleet.cli", "--repository", str(repo), "build", "image_classifier"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert (repo / "efficientnet_lite0" / "1" / "model.onnx").is_file()


def test_cached_recipes_are_current_after_make_build() -> None:
    """`make test` builds first: the repository holds exactly the cached, checked exports."""
    cached = [r for r in pipelines.recipes("cpu") if r.cached]
    assert "efficientnet_lite0/1/model.onnx" in [o for r in cached for o in r.outputs]
    assert all(r.is_current(REPOSITORY) for r in cached)


def test_every_served_artifact_has_a_recipe_and_nothing_is_missing() -> None:
    """What `fleet serve` checks before it starts: no built file of any loaded model is missing."""
    assert missing_artifacts(REPOSITORY, models_to_load(REPOSITORY), "cpu") == []


def test_unknown_pipeline_is_a_clear_error() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tritonfleet.cli", "build", "audio"], capture_output=True, text=True
    )
    assert out.returncode == 2
    message = out.stdout.replace("\n", "")
    assert "unknown pipeline 'audio'; choose from [" in message and "'image_classifier'" in message
    assert "Traceback" not in out.stderr


CONCAT_RECIPE = """
import argparse, pathlib
from tritonfleet.artifacts import BuildOption
parser = argparse.ArgumentParser()
parser.add_argument("--docs")
parser.add_argument("--model", type=pathlib.Path)
parser.add_argument("--output", type=pathlib.Path)
args = parser.parse_args()
texts = [p.read_text() for p in BuildOption("docs", "", "").paths(args.docs)]
(args.output / "index.txt").write_text(args.model.read_text() + "|" + "+".join(texts))
"""


def index_recipe() -> Recipe:
    """A recipe that reads another recipe's output and a corpus named by a build option."""
    return Recipe(
        script="build/index.py",
        outputs=("toy_index/1/index.txt",),
        args=(
            "--docs",
            "{docs}",
            "--model",
            "{repository}/toy/1/model.bin",
            "--output",
            "{output}/toy_index/1",
        ),
        needs=("toy/1/model.bin",),
        options=(artifacts.BuildOption("docs", "docs/*.md", "documents", files=True),),
    )


def test_a_files_option_and_the_needed_artifacts_are_in_the_key(project: Path, tmp_path: Path) -> None:
    (project / "build" / "index.py").write_text(CONCAT_RECIPE)
    (project / "docs").mkdir()
    (project / "docs" / "a.md").write_text("alpha")
    (project / "docs" / "skip.txt").write_text("not matched by the glob")
    repository = project / "model_repository"
    artifacts.build(recipe(), repository, log=lambda _: None)
    index = repository / "toy_index" / "1" / "index.txt"
    assert artifacts.build(index_recipe(), repository, log=lambda _: None) == "built"
    assert index.read_text() == "v1|alpha"
    assert artifacts.build(index_recipe(), repository, log=lambda _: None) == "current"

    (project / "docs" / "a.md").write_text("alpha, edited")  # the corpus changes: rebuilt
    assert artifacts.build(index_recipe(), repository, log=lambda _: None) == "built"
    assert index.read_text() == "v1|alpha, edited"

    (project / "build" / "weights.txt").write_text("v2")  # the artifact it needs changes: rebuilt
    artifacts.build(recipe(), repository, log=lambda _: None)
    assert artifacts.build(index_recipe(), repository, log=lambda _: None) == "built"
    assert index.read_text() == "v2|alpha, edited"

    other = tmp_path / "notes"  # another corpus, given as the option: a folder of .md and .txt files
    (other / "deep").mkdir(parents=True)
    (other / "deep" / "n.txt").write_text("note")
    options = {"docs": str(other)}
    assert artifacts.build(index_recipe(), repository, log=lambda _: None, options=options) == "built"
    assert index.read_text() == "v2|note"
    assert index_recipe().key(repository, options) != index_recipe().key(repository)


def test_a_files_options_key_does_not_depend_on_where_the_project_is(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second clone elsewhere finds the index its corpus was built into (by content, not by path)."""
    (project / "build" / "index.py").write_text(CONCAT_RECIPE)
    (project / "docs").mkdir()
    (project / "docs" / "a.md").write_text("alpha")
    repository = project / "model_repository"
    artifacts.build(recipe(), repository, log=lambda _: None)
    key = index_recipe().key(repository)
    clone = tmp_path / "clone"
    shutil.copytree(project, clone)
    monkeypatch.setattr(artifacts, "PROJECT_ROOT", clone)
    assert index_recipe().key(clone / "model_repository") == key
    (clone / "docs" / "a.md").write_text("alpha, edited")
    assert index_recipe().key(clone / "model_repository") != key


def test_a_needed_artifact_that_is_not_built_is_a_clear_error(project: Path) -> None:
    (project / "build" / "index.py").write_text(CONCAT_RECIPE)
    with pytest.raises(BuildError, match=r"needs toy/1/model.bin, which is not built"):
        artifacts.build(index_recipe(), project / "model_repository", log=lambda _: None)


def test_recipes_come_after_those_whose_outputs_they_need() -> None:
    """rag's index needs the text_embedding artifacts: `fleet build rag` builds those first, and so does
    `fleet build` (registry order would put rag first)."""
    names = [r.script for r in pipelines.recipes("cpu", ["rag"])]
    assert names == ["build/text_embedding/export_onnx.py", "build/rag/build_index.py"]
    recipes = pipelines.recipes("cpu")
    every = [r.script for r in recipes]
    assert every.index("build/text_embedding/export_onnx.py") < every.index("build/rag/build_index.py")
    assert len(recipes) == len(set(recipes))  # each once; two may share a script (tabular's, one per model)


def test_fleet_build_offers_the_recipes_options() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tritonfleet.cli", "build", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--corpus" in out and "README.md,docs/**/*.md" in out
