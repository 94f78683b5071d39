"""The models on ``/v1``: the pipelines' ``OpenAIModel`` declarations, resolved against the repository
(tokenizer, chat template) and the running server (what is loaded, the served configs' inputs and limits).

Nothing here lists a model by hand: a pipeline that declares an ``OpenAIModel`` is served once its Triton
models are loaded, and listed on ``/v1/models`` while they are READY.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

from tritonfleet import pipelines
from tritonfleet.errors import ClientError, Unavailable
from tritonfleet.openai.errors import UnknownModel
from tritonfleet.openai.triton import Triton
from tritonfleet.pipelines import OpenAIModel
from tritonfleet.pipelines.llm import interface as llm

GUIDE_TYPE, GUIDE = llm.GUIDE_TYPE.name, llm.GUIDE.name


@dataclass(frozen=True)
class Tokenizing:
    """A model's tokenizer folder: the tokenizer, its own chat template, its context length."""

    tokenizer: Tokenizer
    template: Any  # a jinja2 Template, or None when the folder has no chat_template.jinja
    model_max_length: int | None

    @classmethod
    def load(cls, folder: Path) -> Tokenizing:
        config = json.loads((folder / "tokenizer_config.json").read_text())
        template_file = folder / "chat_template.jinja"
        template = None
        if template_file.is_file():
            template = ImmutableSandboxedEnvironment().from_string(template_file.read_text())
        elif isinstance(config.get("chat_template"), str):
            template = ImmutableSandboxedEnvironment().from_string(config["chat_template"])
        length = config.get("model_max_length")
        return cls(
            Tokenizer.from_file(str(folder / "tokenizer.json")),
            template,
            int(length) if isinstance(length, int | float) and length < 1e9 else None,
        )

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)


@dataclass(frozen=True)
class Served:
    """What the running server says about a chat model: its inputs and limits."""

    inputs: frozenset[str]  # the stream model's and the unary model's inputs, both
    max_seq_len: int | None  # prompt + completion, tokens
    max_tokens: int | None  # completion, tokens
    max_batch: int = 1  # rows one request may carry (the served models' max_batch_size)
    unary_decoupled: bool = False  # the unary model is decoupled: one response through a gRPC stream

    @property
    def guided(self) -> bool:
        """Whether the served models take a decoding guide (both targets; an older
        TensorRT-LLM backend: no)."""
        return GUIDE_TYPE in self.inputs and GUIDE in self.inputs


class OpenAIModels:
    """The models ``/v1`` offers: the pipelines' ``OpenAIModel`` declarations by id, resolved against
    ``repository`` (tokenizers) and the running server (what is ready, what the served configs take)."""

    def __init__(
        self, repository: Path, triton: Triton, models: dict[str, OpenAIModel] | None = None
    ) -> None:
        self.repository = Path(repository)
        self.triton = triton
        self.declared = pipelines.openai_models() if models is None else models
        self._tokenizing: dict[str, Tokenizing] = {}
        self._served: dict[str, Served] = {}

    def declared_model(self, model_id: Any) -> OpenAIModel:
        """The declared model ``model_id``, else 404."""
        model = self.declared.get(model_id) if isinstance(model_id, str) else None
        if model is None:
            raise UnknownModel(str(model_id))
        return model

    def get(self, model_id: Any, kind: str) -> OpenAIModel:
        """The model ``model_id`` of ``kind``: 404 when there is none of that id, 400 for the wrong kind."""
        model = self.declared_model(model_id)
        if model.kind != kind:
            raise ClientError(
                f"'{model_id}' is a {model.kind} model; use it on the {model.kind} endpoint",
                param="model",
                code="wrong_model_kind",
            )
        return model

    async def listed(self) -> list[OpenAIModel]:
        """The declared models whose Triton models are all READY."""
        ready = await self.triton.ready_models()
        return [m for m in self.declared.values() if self.triton_models(m) <= ready]

    @staticmethod
    def triton_models(model: OpenAIModel) -> set[str]:
        return {m for m in (model.unary_model, model.stream_model) if m}

    def tokenizing(self, model: OpenAIModel) -> Tokenizing | None:
        if model.tokenizer is None:
            return None
        if model.id not in self._tokenizing:
            folder = self.repository / model.tokenizer / "1" / "tokenizer"
            if not (folder / "tokenizer.json").is_file():
                raise Unavailable(f"{model.id}: no tokenizer in {model.tokenizer} (run `fleet build`)")
            self._tokenizing[model.id] = Tokenizing.load(folder)
        return self._tokenizing[model.id]

    async def served(self, model: OpenAIModel) -> Served:
        if model.id not in self._served:
            inputs: set[str] = set()
            batch = []
            unary = await self.triton.config(model.unary_model)
            decoupled = bool(unary.get("model_transaction_policy", {}).get("decoupled"))
            for name in self.triton_models(model):
                config = await self.triton.config(name)
                inputs |= {t["name"] for t in config.get("input", [])}
                batch.append(int(config.get("max_batch_size", 0)))
            params: dict[str, Any] = {}
            if model.engine:
                config = await self.triton.config(model.engine)
                params = {k: v.get("string_value") for k, v in config.get("parameters", {}).items()}
            tokenizing = self.tokenizing(model)
            max_seq_len = _int(params.get("max_seq_len")) or (tokenizing and tokenizing.model_max_length)
            self._served[model.id] = Served(
                frozenset(inputs),
                max_seq_len or None,
                _int(params.get("max_tokens")),
                max(min(batch), 1),
                decoupled,
            )
        return self._served[model.id]


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
