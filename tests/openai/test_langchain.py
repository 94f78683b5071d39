"""LangChain's OpenAI integration (langchain-openai), unchanged, against /v1."""

from __future__ import annotations

import numpy as np

from tests.openai.conftest import CHAT_MODEL, embedding_model


def test_chat_openai_invoke_and_stream(base_url: str) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=base_url, api_key="none", model=CHAT_MODEL, temperature=0, max_retries=0)
    answer = llm.invoke("Name three primary colors.")
    assert "Red" in answer.content or "red" in answer.content, answer.content
    assert answer.usage_metadata["output_tokens"] > 0
    pieces = [chunk.content for chunk in llm.stream("Name three primary colors.")]
    assert len(pieces) > 3 and "".join(pieces) == answer.content


def test_openai_embeddings(base_url: str) -> None:
    from langchain_openai import OpenAIEmbeddings

    model = embedding_model()
    embeddings = OpenAIEmbeddings(
        base_url=base_url, api_key="none", model=model, check_embedding_ctx_length=False, max_retries=0
    )
    docs = ["A cat sat on the mat.", "Stock markets fell sharply today.", "A kitten lay on the rug."]
    vectors = np.array(embeddings.embed_documents(docs))
    query = np.array(embeddings.embed_query("Where did the cat sit?"))
    assert vectors.shape == (3, query.size) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-3)
    similarity = vectors @ query
    assert similarity[0] > similarity[1] and similarity[2] > similarity[1]
