"""/v1/embeddings with the openai client over the text_embedding pipeline (skipped until it is declared)."""

from __future__ import annotations

import numpy as np
import openai
import pytest

from tests.openai.conftest import embedding_model


def test_embeddings_float_and_base64(client) -> None:
    model = embedding_model()
    texts = ["The cat sat on the mat.", "A kitten rested on the rug.", "Interest rates rose again."]
    one = client.embeddings.create(model=model, input=texts[0], encoding_format="float")
    assert len(one.data) == 1 and len(one.data[0].embedding) == 384
    many = client.embeddings.create(model=model, input=texts)  # the client asks for base64 by default
    vectors = np.array([d.embedding for d in many.data])
    assert [d.index for d in many.data] == [0, 1, 2]
    assert np.allclose(vectors[0], one.data[0].embedding, atol=1e-5)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-3)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert many.usage.prompt_tokens == many.usage.total_tokens > one.usage.prompt_tokens > 0
    with pytest.raises(openai.BadRequestError, match="dimensions"):
        client.embeddings.create(model=model, input="x", dimensions=64)
    with pytest.raises(openai.BadRequestError, match="token arrays"):
        client.embeddings.create(model=model, input=[[1, 2, 3]])
    with pytest.raises(openai.BadRequestError, match="embedding model"):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
