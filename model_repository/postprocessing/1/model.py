"""postprocessing: token ids in, text out (TensorRT-LLM's inflight_batcher_llm ``postprocessing`` names).

Stateless: it decodes the tokens of each response on their own. That is exact for this byte-level BPE
tokenizer when a response never ends inside a UTF-8 character, which the CPU ``tensorrt_llm`` model
guarantees by grouping tokens (see tritonfleet/llm/detokenizer.py). A decoded piece that still ends in an
incomplete character is an error of the producer, and shows as U+FFFD rather than being dropped.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        tokenizer_dir = (
            Path(args["model_repository"]) / args["model_version"] / params.get("tokenizer_dir", "tokenizer")
        )
        self.tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
        self.skip_special = params.get("skip_special_tokens", "true") == "true"

    def execute(self, requests):
        responses = []
        for request in requests:
            tokens = pb_utils.get_input_tensor_by_name(request, "TOKENS_BATCH").as_numpy()
            lengths = pb_utils.get_input_tensor_by_name(request, "SEQUENCE_LENGTH").as_numpy()
            lengths = lengths.reshape(-1)
            tokens = tokens.reshape(lengths.size, tokens.shape[-1])  # [batch * beams, tokens]
            texts = [
                self.tokenizer.decode(row[:n].tolist(), skip_special_tokens=self.skip_special)
                for row, n in zip(tokens, lengths, strict=True)
            ]
            # Shape [batch * beams] as TensorRT-LLM's postprocessing returns it: clients read text_output[0].
            output = np.array([t.encode("utf-8") for t in texts], dtype=np.object_)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT", output)]))
        return responses
