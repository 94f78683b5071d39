"""The RAG tests' corpus: ``tests/rag/corpus/``, a snapshot of README.md and docs/ (2026-12-07) that no one
edits, with its labelled questions (``questions.json``: build/rag/questions.json's, each label's file under
the snapshot). The tests' server serves a retriever indexed from it, so what they assert about retrieval
(recall, which file answers a question) holds whatever README and docs/ say now: those stay free to change,
and ``fleet build rag`` still indexes them by default.

The index is the rag pipeline's own recipe with the snapshot as its corpus and labels (``--strict-labels``:
a label that does not hold fails, which only an edit of the snapshot could cause), built and cached by
content hash like any artifact, into a repository that is the built one but for the retriever's folder.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from tritonfleet import artifacts, pipelines
from tritonfleet.artifacts import PROJECT_ROOT, REPOSITORY, Recipe

CORPUS = PROJECT_ROOT / "tests" / "rag" / "corpus"
QUESTIONS = CORPUS / "questions.json"
RETRIEVER = "retriever"


def relative(path: Path) -> str:
    """A corpus file as the index names it (relative to the project root): ``tests/rag/corpus/README.md``."""
    return path.relative_to(PROJECT_ROOT).as_posix()


def recipe() -> Recipe:
    """The rag pipeline's index recipe, reading the snapshot and its labels, strictly."""
    (index,) = [r for r in pipelines.get("rag").recipes if RETRIEVER in r.models]
    questions = relative(QUESTIONS)
    args = tuple(questions if a.endswith("questions.json") else a for a in index.args)
    return dataclasses.replace(
        index,
        args=(*args, "--strict-labels"),
        sources=(*(s for s in index.sources if not s.endswith("questions.json")), questions),
    )


def build_repository(dest: Path) -> Path:
    """``dest`` as the built repository (each model folder a link to the built one) but for the retriever,
    a folder of its own whose version holds the snapshot's index."""
    dest.mkdir(parents=True, exist_ok=True)
    for model in REPOSITORY.iterdir():
        if model.is_dir() and model.name != RETRIEVER:
            (dest / model.name).symlink_to(model, target_is_directory=True)
    shutil.copytree(
        REPOSITORY / RETRIEVER,
        dest / RETRIEVER,
        ignore=lambda folder, names: [n for n in names if Path(folder).name.isdigit() and n != "model.py"],
    )
    artifacts.build(recipe(), dest, log=lambda _: None, options={"corpus": relative(CORPUS)})
    return dest
