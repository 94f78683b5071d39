"""README and docs/ are free to change: in a copy of the project whose README grows and whose docs lose the
phrase a labelled question pointed at, the RAG tests that read documents pass unchanged.

They pass by construction: every RAG test reads the frozen corpus (tests/rag/frozen.py), and the session's
server serves its index; the index that ``fleet build rag`` makes of README and docs/ reports a label gone
stale instead of failing (tests/rag/test_rag_index.py). This runs the server-free ones in the copy; the
server tests assert on the same frozen index.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import copy_sources
from tritonfleet.artifacts import REPOSITORY


def project_copy(dest: Path) -> Path:
    """The project's files, and the built repository linked in."""
    copy_sources(dest)
    (dest / "model_repository").symlink_to(REPOSITORY, target_is_directory=True)
    return dest


def test_editing_readme_and_docs_breaks_no_rag_test(tmp_path: Path) -> None:
    project = project_copy(tmp_path / "project")
    with (project / "README.md").open("a") as readme:
        readme.write("\n## Appended\n\nA new section about nothing the questions ask.\n" * 20)
    docs = project / "docs" / "text_embedding.md"
    assert "waits up to 2 ms" in docs.read_text()  # what a labelled question and a server test point at
    docs.write_text(docs.read_text().replace("waits up to 2 ms", "waits a moment"))
    env = {**os.environ, "PYTHONPATH": str(project)}
    where = subprocess.run(
        [sys.executable, "-c", "import tritonfleet.artifacts as a; print(a.PROJECT_ROOT)"],
        cwd=project, env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert Path(where) == project  # the copy's package, reading the copy's documents
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not server",
         "tests/rag/test_rag_index.py", "tests/rag/test_rag.py::test_recall_at_3_on_the_labelled_questions"],
        cwd=project, capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and "failed" not in out.stdout and "skipped" not in out.stdout
