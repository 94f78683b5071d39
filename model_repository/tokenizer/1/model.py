"""tokenizer: texts -> ``input_ids`` and ``attention_mask`` for the embedding model, plus per text its token
count and whether it was truncated.

Every text of every request in a dynamic batch is tokenized in one ``encode_batch`` call and padded to the
longest of them, so all the responses of one execution have the same sequence length and the embedding
model's dynamic batcher, which only batches requests of equal shapes, runs them together. A request with a
bad text (not UTF-8, empty) gets its own error; the others of the batch are answered. The tokenization
itself is ``tritonfleet.pipelines.text_embedding.embedding.TextTokenizer``, the code the build checks and the
RAG index also run.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from tritonfleet.errors import ClientError
from tritonfleet.pipelines.text_embedding import interface
from tritonfleet.pipelines.text_embedding.embedding import TextTokenizer, decode_text
from tritonfleet.python_backend import error, output_dtypes, parameters


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = parameters(config)
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.tokenizer = TextTokenizer(
            version_dir / params.get("tokenizer_file", "tokenizer.json"),
            pad_to_multiple_of=int(params.get("pad_to_multiple_of", "0")) or None,
        )
        self.input = interface.TEXT.name
        self.dtypes = output_dtypes(config)

    def execute(self, requests):
        texts, errors = [], []
        for request in requests:
            try:
                tensor = pb_utils.get_input_tensor_by_name(request, self.input)
                if tensor is None:  # Triton 24.10 counts a request's inputs; it does not check their names
                    raise ClientError("the request has no such input")
                values = tensor.as_numpy().reshape(-1)
                texts.append([decode_text(v) for v in values])
                errors.append(None if len(values) else ClientError("no text in the request"))
            except ClientError as exc:  # its own error; the other requests are tokenized
                texts.append([])
                errors.append(exc)
        encoded = self.tokenizer.encode([text for batch in texts for text in batch])
        responses, row = [], 0
        for batch, problem in zip(texts, errors, strict=True):
            mine = encoded.rows(row, row + len(batch))
            row += len(batch)
            if problem is None and mine.empty.any():
                empty = int(mine.empty.argmax())
                problem = ClientError(f"text {empty} of the request is empty: it has no word pieces")
            if problem is not None:
                name = interface.TOKENIZER.name
                responses.append(
                    pb_utils.InferenceResponse(error=error(name, problem, f"{name}: {self.input}: "))
                )
                continue
            outputs = {
                interface.INPUT_IDS.name: mine.input_ids,
                interface.ATTENTION_MASK.name: mine.attention_mask,
                interface.NUM_TOKENS.name: mine.num_tokens.reshape(-1, 1),
                interface.TRUNCATED.name: mine.truncated.reshape(-1, 1),
            }
            responses.append(
                pb_utils.InferenceResponse(
                    [pb_utils.Tensor(n, np.ascontiguousarray(v, self.dtypes[n])) for n, v in outputs.items()]
                )
            )
        return responses
