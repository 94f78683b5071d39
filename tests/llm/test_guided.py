"""Guided decoding without a server: the sampler, masked by llguidance for the real tokenizer, turns
arbitrary logits into text that follows the guide (random logits stand in for a model that ignores it)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from tokenizers import Tokenizer

from tritonfleet.errors import ClientError
from tritonfleet.pipelines.llm.guided import GuideCompiler
from tritonfleet.pipelines.llm.sampling import Sampler, SamplingParams

TOKENIZER = Path(__file__).resolve().parents[2] / "model_repository" / "preprocessing" / "1" / "tokenizer"
END_ID, VOCAB = 2, 49152
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
    },
    "required": ["name", "age", "tags"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def compiler() -> GuideCompiler:
    if not (TOKENIZER / "tokenizer.json").is_file():
        pytest.skip("tokenizer not built (fleet build llm)")
    return GuideCompiler(TOKENIZER / "tokenizer.json", (END_ID,), VOCAB)


def generate(compiler: GuideCompiler, guide_type: str, guide: str, seed: int, limit: int = 200) -> str:
    rng = np.random.default_rng(seed)
    params = SamplingParams(max_tokens=limit, end_ids=(END_ID,), temperature=1.0, top_p=1.0, seed=seed)
    sampler = Sampler(params, [1], compiler.compile(guide_type, guide))
    out: list[int] = []
    for _ in range(limit):
        token, _ = sampler.choose(rng.normal(0, 3, VOCAB).astype(np.float32), out)
        if token == END_ID:
            break
        out.append(token)
    else:
        pytest.fail("the guide never let the sequence end")
    return Tokenizer.from_file(str(TOKENIZER / "tokenizer.json")).decode(out)


@pytest.mark.parametrize("seed", range(5))
def test_json_schema_output_validates(compiler: GuideCompiler, seed: int) -> None:
    text = generate(compiler, "json_schema", json.dumps(SCHEMA), seed)
    jsonschema.validate(json.loads(text), SCHEMA)


def test_json_and_regex(compiler: GuideCompiler) -> None:
    vocab = Tokenizer.from_file(str(TOKENIZER / "tokenizer.json"))
    allowed = compiler.compile("json", "").allowed(VOCAB)  # any JSON value may start
    assert allowed[vocab.token_to_id("{")] and allowed[vocab.token_to_id("[")]
    assert not allowed[vocab.token_to_id("Hello")] and not allowed[END_ID]
    text = generate(compiler, "regex", r"[0-9]{3}-[a-z]{2}", 1)
    assert len(text) == 6 and text[:3].isdigit() and text[3] == "-" and text[4:].isalpha()


def test_greedy_with_a_guide_picks_the_best_allowed_token(compiler: GuideCompiler) -> None:
    logits = np.zeros(VOCAB, dtype=np.float32)
    brace = Tokenizer.from_file(str(TOKENIZER / "tokenizer.json")).token_to_id("{")
    logits[5] = 10.0  # the model's favourite, which the grammar forbids at the start of an object
    logits[brace] = 1.0
    sampler = Sampler(
        SamplingParams(max_tokens=4, end_ids=(END_ID,)), [1], compiler.compile("json_schema", "{}")
    )
    token, logprob = sampler.choose(logits, [])
    assert token != 5 and logprob <= 0


@pytest.mark.parametrize(
    ("guide_type", "guide", "message"),
    [
        ("yaml", "x", "must be one of"),
        ("json_schema", "", "required"),
        ("json_schema", "{not json", "not JSON"),
        ("json_schema", '{"type": "foo"}', "foo"),
        ("regex", "(", "guided_decoding_guide"),
    ],
)
def test_invalid_guides_are_value_errors(
    compiler: GuideCompiler, guide_type: str, guide: str, message: str
) -> None:
    with pytest.raises(ClientError, match=message):
        compiler.compile(guide_type, guide)
