"""retriever: a question's embedding and text in; the prompt with the nearest chunks as numbered sources,
the flag that makes preprocessing apply the LLM's chat template, and the sources' names out.

The index (FAISS, chunk metadata) is built by ``build/rag/build_index.py`` into this version folder; search
and prompt are ``tritonfleet.pipelines.rag.retrieval``'s. ``NUM_SOURCES`` (optional) says how many chunks to
retrieve, between 1 and ``max_sources``; ``APPLY_CHAT_TEMPLATE`` (optional, default true) is the client's,
passed on. A request with a bad value gets its own error naming this step; the other requests of the batch are
answered.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from tritonfleet.errors import ClientError
from tritonfleet.pipelines.rag import interface as rag
from tritonfleet.pipelines.rag.retrieval import Index, prompt
from tritonfleet.pipelines.text_embedding.embedding import decode_text
from tritonfleet.python_backend import answer_each, output_dtypes, parameters


def _values(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


class TritonPythonModel:
    def initialize(self, args):
        import faiss

        faiss.omp_set_num_threads(1)  # exact search over a small index: threads would only contend
        config = json.loads(args["model_config"])
        params = parameters(config)
        self.index = Index.load(Path(args["model_repository"]) / args["model_version"])
        self.default_sources = int(params.get("default_sources", "3"))
        self.max_sources = int(params.get("max_sources", "8"))
        self.dtypes = output_dtypes(config)

    def execute(self, requests):
        name = rag.RETRIEVER.name
        return answer_each(
            name, requests, lambda r: pb_utils.InferenceResponse(self._retrieve(r)), f"{name}: "
        )

    def _retrieve(self, request):
        embeddings, questions = _values(request, rag.EMBEDDING.name), _values(request, rag.QUESTION.name)
        if embeddings is None or questions is None:  # Triton 24.10 counts inputs, it does not name them
            raise ClientError(f"the request needs the inputs {rag.EMBEDDING.name} and {rag.QUESTION.name}")
        questions = [decode_text(q) for q in questions.reshape(-1)]
        rows = len(questions)
        if embeddings.shape != (rows, self.index.dim):
            expected = [rows, self.index.dim]
            raise ClientError(f"{rag.EMBEDDING.name} has shape {list(embeddings.shape)}, expected {expected}")
        counts = _values(request, rag.NUM_SOURCES_IN.name)
        counts = np.full(rows, self.default_sources) if counts is None else counts.reshape(-1)
        if counts.size != rows or not all(1 <= int(n) <= self.max_sources for n in counts):
            raise ClientError(
                f"{rag.NUM_SOURCES.name} must be between 1 and {self.max_sources}, got {counts.tolist()}"
            )
        chat = _values(request, rag.APPLY_CHAT_TEMPLATE_IN.name)
        chat = np.ones(rows, bool) if chat is None else chat.reshape(-1).astype(bool)
        hits = self.index.search(embeddings, questions, int(counts.max()))
        width = int(counts.max())  # SOURCES is [rows, width]: a row asking for fewer is padded with ""
        sources = [[h.chunk.source for h in row[: int(n)]] for row, n in zip(hits, counts, strict=True)]
        prompts = [prompt(q, row[: int(n)]) for q, row, n in zip(questions, hits, counts, strict=True)]
        outputs = {
            rag.PROMPT.name: [[p.encode()] for p in prompts],
            rag.USE_CHAT_TEMPLATE.name: chat.reshape(rows, 1),
            rag.SOURCES_OUT.name: [[s.encode() for s in row] + [b""] * (width - len(row)) for row in sources],
        }
        return [pb_utils.Tensor(n, np.array(v, dtype=self.dtypes[n])) for n, v in outputs.items()]
