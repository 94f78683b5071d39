"""The OpenVINO engine of the CPU LLM: optimum-intel exports the Hugging Face checkpoint with int8 weights
(NNCF, data-free, int8_asym per channel), in a pinned venv of its own in the build cache.

optimum-intel 2.2.0 needs ``transformers<5.6`` while the project venv has 5.23, so the export runs in
``~/.cache/tritonfleet/openvino-export-venv``, made on first use (about a minute from the local torch
wheel) and remade when its pins change. pip pulls a ``torchvision`` that does not match the local
``torch`` and breaks every export (``operator torchvision::nms does not exist``): the text export never uses
it, so it is uninstalled. The venv also holds ``openvino-genai`` (the bench's GenAI pipeline) and
``openvino-tokenizers`` (with which the export writes the tokenizer models that pipeline reads).

The engine is cached by checkpoint, precision and pins in
``~/.cache/tritonfleet/llm/openvino-<precision>-<key>``: ``openvino_model.{xml,bin}``, the tokenizer files
and ``engine.json`` (what the server needs: end ids, vocabulary, context, and the KV cache's shape for
sizing it in blocks). The paged-attention graph edit runs when the server loads the model
(``tritonfleet/pipelines/llm/paged_engine.py``): OpenVINO cannot read such a graph back from IR.

Imported by ``cpu_engine.py`` (the recipe) and run on its own to make the venv:
``python build/llm/openvino_export.py --venv``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tritonfleet.artifacts import cache_root

VENV = cache_root() / "openvino-export-venv"
BASE_PYTHON = Path("/usr/bin/python3.11")
PINS = (
    "optimum-intel==2.2.0",
    "optimum==2.3.0",
    "nncf==3.4.0",
    "openvino==2026.4.1",
    "openvino-tokenizers==2026.4.1.0",
    "openvino-genai==2026.4.1.0",
    "transformers==5.5.4",
    "torch==2.13.0",  # from the local CPU wheel (pip's find-links), like the project venv's
)
WEIGHT_FORMATS = {"int8": "int8", "fp32": "fp32", "int4": "int4"}
EXPORT_VERSION = "1"  # bump when what this module writes changes
ENGINE_INFO = "engine.json"


def venv(log=print, path: Path = VENV) -> Path:
    """The pinned export venv, made on first use; returns its ``python``."""
    python = path / "bin" / "python"
    stamp = path / "tritonfleet-pins.txt"
    pins = "\n".join(PINS)
    if stamp.is_file() and stamp.read_text() == pins:
        return python
    shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = path.parent / "openvino-export-venv.log"
    base = str(BASE_PYTHON) if BASE_PYTHON.exists() else sys.executable
    steps = [
        [base, "-m", "venv", str(path)],
        [str(python), "-m", "pip", "install", "-q", *PINS],
        [str(python), "-m", "pip", "uninstall", "-y", "-q", "torchvision"],
    ]
    log(f"making the OpenVINO export venv {path} ({', '.join(PINS)}; log: {record})")
    start = time.perf_counter()
    with record.open("w") as out:
        for cmd in steps:
            if subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode:
                raise RuntimeError(f"making the export venv failed: see {record}")
    stamp.write_text(pins)
    log(f"export venv ready in {time.perf_counter() - start:.0f} s")
    return python


def engine_key(checkpoint: Path, precision: str) -> str:
    text = f"{checkpoint.name}/{precision}/{'|'.join(PINS)}/{EXPORT_VERSION}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def export(checkpoint: Path, precision: str, log=print) -> tuple[Path, float | None]:
    """The OpenVINO engine for ``precision``, exported once; with the export's wall time when it ran now."""
    out = cache_root() / "llm" / f"openvino-{precision}-{engine_key(checkpoint, precision)}"
    if (out / ENGINE_INFO).is_file():
        return out, None
    python = venv(log)
    tmp = Path(tempfile.mkdtemp(dir=out.parent))
    cli = python.parent / "optimum-cli"
    cmd = [str(cli), "export", "openvino", "--model", str(checkpoint), "--task", "text-generation-with-past",
           "--weight-format", WEIGHT_FORMATS[precision], str(tmp)]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    record = tmp / "export.log"
    log(" ".join(cmd))
    start = time.perf_counter()
    with record.open("w") as f:
        if subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode:
            tail = "\n".join(record.read_text().strip().splitlines()[-20:])
            raise RuntimeError(f"optimum-cli export failed (log {record}):\n{tail}")
    seconds = time.perf_counter() - start
    (tmp / ENGINE_INFO).write_text(json.dumps(engine_info(tmp, precision), indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out, seconds


def engine_info(model_dir: Path, precision: str) -> dict:
    """What the server reads before it loads the model: end ids, vocabulary, context and the KV shape."""
    config = json.loads((model_dir / "config.json").read_text())
    generation = model_dir / "generation_config.json"
    eos = json.loads(generation.read_text()).get("eos_token_id") if generation.is_file() else None
    eos = config["eos_token_id"] if eos is None else eos
    heads = config["num_attention_heads"]
    return {
        "engine": "openvino",
        "precision": precision,
        "vocab_size": config["vocab_size"],
        "context_length": config["max_position_embeddings"],
        "end_ids": sorted(set(eos if isinstance(eos, list) else [eos])),
        "layers": config["num_hidden_layers"],
        "kv_heads": config.get("num_key_value_heads", heads),
        "head_dim": config.get("head_dim") or config["hidden_size"] // heads,
    }


if __name__ == "__main__":
    if sys.argv[1:] != ["--venv"]:
        sys.exit(__doc__)
    print(venv())
