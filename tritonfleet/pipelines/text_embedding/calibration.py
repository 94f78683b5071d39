"""Real inputs of minilm_l6 for TensorRT's int8 calibration and the GPU plan's check: the project's own
prose (README.md and docs/), one paragraph per text, tokenized by the served tokenizer (model
``tokenizer``'s ``tokenizer.json``) as one batch padded to its longest text."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tritonfleet.artifacts import PROJECT_ROOT
from tritonfleet.pipelines.text_embedding.embedding import TextTokenizer

MODEL = "minilm_l6"


def paragraphs() -> list[str]:
    """Prose paragraphs of the documentation, in a fixed order: no code blocks, tables or headings."""
    texts = []
    for path in [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").rglob("*.md"))]:
        fenced = False
        for block in path.read_text().split("\n\n"):
            fenced ^= block.count("```") % 2 == 1
            text = " ".join(block.split())
            if fenced or text.startswith(("#", "|", "```", "-", "$")) or len(text) < 80:
                continue
            texts.append(text)
    return texts


def samples(repository: Path, count: int) -> dict[str, np.ndarray]:
    """``count`` real inputs as ``{"input_ids", "attention_mask"}``, int64 [count, longest]."""
    texts = paragraphs()
    if len(texts) < count:
        raise ValueError(f"{MODEL}: {len(texts)} paragraphs of documentation, fewer than {count}")
    encoded = TextTokenizer(repository / "tokenizer" / "1" / "tokenizer.json").encode(texts[:count])
    return {"input_ids": encoded.input_ids, "attention_mask": encoded.attention_mask}


MODELS = {MODEL: samples}
