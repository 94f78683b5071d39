"""Requests and responses of the ``image_classifier`` pipeline, the same for HTTP and gRPC."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tritonfleet.clients.call import Call
from tritonfleet.pipelines.image_classifier import interface

MODEL = interface.IMAGE_CLASSIFIER.name
INPUT = interface.IMAGE.name
OUTPUT = interface.PROBABILITIES.name

ImageSource = str | Path | bytes


@dataclass(frozen=True)
class Classification:
    label: str
    score: float
    index: int


def read_image(image: ImageSource) -> bytes:
    """Encoded image bytes from a path or the bytes themselves (the server decodes them)."""
    return image if isinstance(image, bytes) else Path(image).read_bytes()


def classify_images(images: list[ImageSource], top_k: int = 5) -> Call:
    """Top-k ImageNet classes (best first) of each encoded image (paths or bytes), sent as one batch."""
    if top_k < 1:
        raise ValueError("top_k must be at least 1")
    data = np.array([[read_image(i)] for i in images], dtype=np.object_)
    # Triton's classification extension: the server returns the top-k as "score:index:label".
    return Call(MODEL, {INPUT: data}, parse_response, outputs={OUTPUT: top_k})


def classify_image(image: ImageSource, top_k: int = 5) -> Call:
    """Top-k ImageNet classes of one encoded image (path or bytes), best first."""
    return dataclasses.replace(classify_images([image], top_k), parse=lambda r: parse_response(r)[0])


def parse_response(result: Any) -> list[list[Classification]]:
    """One list of classifications (best first) per image in the batch."""
    rows = result.as_numpy(OUTPUT)
    return [[_parse_entry(entry) for entry in row] for row in rows]


def _parse_entry(entry: bytes | str) -> Classification:
    text = entry.decode() if isinstance(entry, bytes) else entry
    score, index, label = text.split(":", 2)
    return Classification(label=label, score=float(score), index=int(index))


HELPERS = (
    classify_images,
    classify_image,
)  # FleetClient.<name>(...), AsyncFleetClient.<name>(...)
