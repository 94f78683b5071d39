"""The image_classifier ensemble on a real tritonserver: real photos, both protocols, sync and asyncio."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from tests.conftest import CAT_CLASSES, COFFEE_CLASSES
from tritonfleet.clients import AsyncFleetClient, FleetClient
from tritonfleet.server import TritonServer

PROTOCOLS = ["http", "grpc"]


def url(server: TritonServer, protocol: str) -> str:
    return server.http_url if protocol == "http" else server.grpc_url


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cat_photo_is_a_cat(server: TritonServer, protocol: str, cat_file: Path) -> None:
    with FleetClient(url(server, protocol), protocol=protocol) as fleet:
        top = fleet.classify_image(cat_file, top_k=5)
    assert top[0].index in CAT_CLASSES, top
    assert top[0].label in {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}
    assert top[0].score > 0.3
    assert [c.score for c in top] == sorted((c.score for c in top), reverse=True)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_coffee_png_is_coffee(server: TritonServer, protocol: str, coffee_png: bytes) -> None:
    with FleetClient(url(server, protocol), protocol=protocol) as fleet:
        top = fleet.classify_image(coffee_png, top_k=5)
    assert COFFEE_CLASSES & {c.index for c in top}, top


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_asyncio_client(server: TritonServer, protocol: str, cat_jpeg: bytes, coffee_png: bytes) -> None:
    async def both() -> list:
        async with AsyncFleetClient(url(server, protocol), protocol=protocol) as fleet:
            return await asyncio.gather(fleet.classify_image(cat_jpeg), fleet.classify_image(coffee_png, 3))

    cat, coffee = asyncio.run(both())
    assert cat[0].index in CAT_CLASSES
    assert len(coffee) == 3
    assert COFFEE_CLASSES & {c.index for c in coffee}


def test_client_batch_matches_singles(server: TritonServer, cat_jpeg: bytes, coffee_png: bytes) -> None:
    with FleetClient(server.grpc_url, protocol="grpc") as fleet:
        batch = fleet.classify_images([cat_jpeg, coffee_png], top_k=3)
        singles = [fleet.classify_image(cat_jpeg, 3), fleet.classify_image(coffee_png, 3)]
    assert [[c.index for c in r] for r in batch] == [[c.index for c in r] for r in singles]
    for got, want in zip(batch, singles, strict=True):
        assert [c.score for c in got] == pytest.approx([c.score for c in want], abs=1e-4)


def test_raw_probabilities_without_classification(server: TritonServer, cat_jpeg: bytes) -> None:
    """Without class_count the ensemble returns the full softmax: 1000 probabilities summing to 1."""
    client = httpclient.InferenceServerClient(server.http_url)
    image = httpclient.InferInput("IMAGE", [1, 1], "BYTES")
    image.set_data_from_numpy(np.array([[cat_jpeg]], dtype=np.object_))
    probs = client.infer("image_classifier", [image]).as_numpy("PROBABILITIES")
    client.close()
    assert probs.shape == (1, 1000)
    assert probs.sum() == pytest.approx(1.0, abs=1e-3)
    assert int(probs.argmax()) in CAT_CLASSES


def test_fleet_infer_cli(server: TritonServer, cat_file: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tritonfleet.cli",
            "infer",
            "image_classifier",
            str(cat_file),
            "--url",
            server.grpc_url,
            "--protocol",
            "grpc",
            "--top-k",
            "3",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(cat_file) in out
    first = out.splitlines()[1]
    assert any(name in first for name in ("tabby", "tiger cat", "Egyptian cat")), out
