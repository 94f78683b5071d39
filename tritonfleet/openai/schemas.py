"""Request bodies of ``/v1`` (pydantic, strict types: ``"1"`` is not a number), and what each field may be.

Fields OpenAI defines that this API cannot honour are accepted only at their neutral value and otherwise
refused with a 400 that says so (``tools``, ``suffix``, ``top_logprobs`` > 0, ...): never silently dropped.
Unknown fields are ignored, as OpenAI-compatible servers do, except those a model declares as its own
(``OpenAIModel.extra_inputs``), which are passed on.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tritonfleet.errors import ClientError

MAX_STOP = 8  # stop sequences a request may give
MAX_N = 8  # choices a request may ask for
MAX_STOP_CHARS = 200
MAX_PROMPTS = 64  # prompts in one completions request
MAX_EMBEDDING_INPUTS = 2048  # as OpenAI's embeddings API

Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]
Seed = Annotated[int, Field(ge=0, lt=2**63)]


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")

    @property
    def extras(self) -> dict[str, Any]:
        return dict(self.__pydantic_extra__ or {})


class StreamOptions(_Body):
    include_usage: bool = False


class JsonSchema(_Body):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchema | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format of type json_schema needs a json_schema object")
        return self


class _Sampling(_Body):
    """The generation fields chat and completions share."""

    model: str = Field(min_length=1)
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: (
        Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]
        | list[Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]]
        | None
    ) = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    seed: Seed | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    n: Annotated[int, Field(ge=1, le=MAX_N)] = 1
    min_tokens: Annotated[int, Field(ge=0)] | None = None  # vLLM's extension (genai-perf sends it)
    user: str | None = None
    logit_bias: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _checks(self) -> _Sampling:
        if isinstance(self.stop, list) and len(self.stop) > MAX_STOP:
            raise ValueError(f"stop: at most {MAX_STOP} sequences")
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed with stream true")
        if self.logit_bias:
            raise ValueError("logit_bias is not supported by this server")
        return self

    @property
    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class TextPart(_Body):
    type: Literal["text"]
    text: str


class Message(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[Any] | None = None

    @model_validator(mode="after")
    def _checks(self) -> Message:
        if self.tool_calls or self.role == "tool":
            raise ValueError("this model does not support tool calls")
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a {self.role} message needs content")
        return self

    @property
    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    logprobs: bool = False
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    response_format: ResponseFormat | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    function_call: Any = None
    parallel_tool_calls: bool | None = None

    @model_validator(mode="after")
    def _chat_checks(self) -> ChatRequest:
        if self.tools or self.functions or self.tool_choice not in (None, "none") or self.function_call:
            raise ValueError("this model does not support tool calls")
        if self.top_logprobs and self.top_logprobs > 0:
            raise ValueError(
                "top_logprobs > 0 is not supported: the pipeline returns only the chosen token's log-prob"
            )
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs true")
        return self

    @property
    def limit(self) -> int | None:
        """The completion's token limit the client asked for (max_completion_tokens wins)."""
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    suffix: str | None = None
    logprobs: Annotated[int, Field(ge=0, le=5)] | None = None
    best_of: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _completion_checks(self) -> CompletionRequest:
        _texts("prompt", self.prompt, MAX_PROMPTS, "prompts")
        if self.suffix:
            raise ValueError("suffix is not supported: this model does not do fill-in-the-middle")
        if self.best_of is not None and self.best_of != self.n:
            raise ValueError("best_of is not supported (only best_of equal to n)")
        if self.logprobs:
            raise ValueError(
                "logprobs > 0 is not supported: the pipeline returns only the chosen token's log-prob"
            )
        return self

    @property
    def prompts(self) -> list[str]:
        return _texts("prompt", self.prompt, MAX_PROMPTS, "prompts")

    @property
    def limit(self) -> int | None:
        return self.max_tokens


class EmbeddingRequest(_Body):
    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Field(ge=1)] | None = None
    user: str | None = None

    @model_validator(mode="after")
    def _checks(self) -> EmbeddingRequest:
        if any(not t for t in self.texts):
            raise ValueError("input: empty strings cannot be embedded")
        return self

    @property
    def texts(self) -> list[str]:
        return _texts("input", self.input, MAX_EMBEDDING_INPUTS, "texts")


def _texts(field: str, value: Any, most: int, what: str) -> list[str]:
    """``field``'s ``value``, a string or a list of them, as a list; a ValueError where it is empty, holds
    token arrays (this API takes text only) or more than ``most`` ``what``."""
    texts = value if isinstance(value, list) else [value]
    if not texts:
        raise ValueError(f"{field}: give a string or a non-empty list of strings")
    if not all(isinstance(t, str) for t in texts):
        raise ValueError(f"{field}: token arrays are not supported; send the text")
    if len(texts) > most:
        raise ValueError(f"{field}: at most {most} {what} in one request")
    return texts


Body = TypeVar("Body", bound=BaseModel)


def parse(cls: type[Body], body: Any) -> Body:
    """``body`` (parsed JSON) as ``cls``, or a 400 naming the first wrong field."""
    if not isinstance(body, dict):
        raise ClientError("the request body must be a JSON object")
    try:
        return cls.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        location = ".".join(str(p) for p in error["loc"])
        param = str(error["loc"][0]) if error["loc"] else None
        message = error["msg"].removeprefix("Value error, ")
        raise ClientError(f"{location}: {message}" if location else message, param=param) from None
