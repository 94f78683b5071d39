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

from tritonfleet.pipelines.text_embedding.embedding import TextError, TextTokenizer, decode_text


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.tokenizer = TextTokenizer(
            version_dir / params.get("tokenizer_file", "tokenizer.json"),
            pad_to_multiple_of=int(params.get("pad_to_multiple_of", "0")) or None,
        )
        self.input = config["input"][0]["name"]
        self.dtypes = {t["name"]: pb_utils.triton_string_to_numpy(t["data_type"]) for t in config["output"]}

    def execute(self, requests):
        texts, errors = [], []
        for request in requests:
            try:
                tensor = pb_utils.get_input_tensor_by_name(request, self.input)
                if tensor is None:  # Triton 24.10 counts a request's inputs; it does not check their names
                    raise TextError("the request has no such input")
                values = tensor.as_numpy().reshape(-1)
                texts.append([decode_text(v) for v in values])
                errors.append(None if len(values) else "no text in the request")
            except TextError as exc:
                texts.append([])
                errors.append(str(exc))
        encoded = self.tokenizer.encode([text for batch in texts for text in batch])
        responses, row = [], 0
        for batch, error in zip(texts, errors, strict=True):
            mine = encoded.rows(row, row + len(batch))
            row += len(batch)
            if error is None and mine.empty.any():
                error = f"text {int(mine.empty.argmax())} of the request is empty: it has no word pieces"
            if error is not None:
                message = f"tokenizer: {self.input}: {error}"
                error = pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            outputs = {
                "input_ids": mine.input_ids,
                "attention_mask": mine.attention_mask,
                "NUM_TOKENS": mine.num_tokens.reshape(-1, 1),
                "TRUNCATED": mine.truncated.reshape(-1, 1),
            }
            responses.append(
                pb_utils.InferenceResponse(
                    [pb_utils.Tensor(n, np.ascontiguousarray(v, self.dtypes[n])) for n, v in outputs.items()]
                )
            )
        return responses
