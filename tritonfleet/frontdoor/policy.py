"""Who may call what through the front door: one table that the HTTP and the gRPC servers both read.

Each operation the front door serves is one :class:`Rule` in :data:`OPERATIONS`: who may call it, which
models it may name, the HTTP method it takes, the route label of its metrics, whether a POST is charged
tokens per minute and who answers it (Triton, the ``/v1`` app, or the front door itself).
:func:`http_operation` and :func:`grpc_operation` say which operation a path or a gRPC method is; what
neither knows is not served (HTTP 404, gRPC UNIMPLEMENTED).

- Who: ``ANYONE`` (the health probes: no key, so that probes keep working; the web console's files, which
  hold no data); ``CALLER`` (a key whenever
  keys are configured or the address is public); ``ADMIN`` (an admin key, whatever the configuration:
  the repository and model-control APIs, trace and log settings); ``NOBODY`` (system and CUDA shared
  memory: registering a region is the first step of a published remote-code-execution chain,
  CVE-2025-23319/23320/23334).
- Which models: ``PUBLIC`` (the pipelines' public models; any other name is 404), ``READABLE`` (also the
  public models' inner steps, for reading only: their config, metadata, readiness and statistics, which
  perf_analyzer and genai-perf read; anything else of a step is 404), or none.
- Admins may not write files on the server through the API: :func:`refuse_file_writes`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from tritonfleet import pipelines
from tritonfleet.errors import ClientError, Forbidden, NotFound
from tritonfleet.frontdoor.validation import Limits, ModelSpec
from tritonfleet.repository import Repository


class Who(enum.Enum):
    ANYONE = "anyone"
    CALLER = "caller"
    ADMIN = "admin"
    NOBODY = "nobody"


class Models(enum.Enum):
    NONE = "none"  # the operation names no model (or one the policy does not restrict: load/unload)
    PUBLIC = "public"
    READABLE = "readable"  # public models, and their steps for reading


@dataclass(frozen=True)
class Rule:
    who: Who
    models: Models = Models.NONE
    method: str | None = None  # the HTTP method it takes (None: any; gRPC has none)
    route: str = ""  # its label in the request metrics
    tokens: bool = False  # a POST is charged tokens per minute too (the key's tpm)
    upstream: str = "triton"  # who answers: "triton", "openai" (the /v1 app) or "door" (the front door)


OPERATIONS: dict[str, Rule] = {
    "health": Rule(Who.ANYONE, route="health"),
    "openai": Rule(Who.CALLER, route="openai", tokens=True, upstream="openai"),  # /v1
    # /v1/files and /v1/batches: a batch's tokens are counted apart from the key's tokens per minute
    "batch": Rule(Who.CALLER, route="batch", upstream="openai"),
    # The web console (tritonfleet/console), served beside /v1: its page and files (no data in them, so
    # open to all: with keys configured the page asks for one); its API, and /chat/stream (a /v1 chat
    # completion in another shape: counted and charged as one), in the /v1 app.
    "console_page": Rule(Who.ANYONE, route="console", upstream="door"),
    "console_api": Rule(Who.CALLER, method="GET", route="console", upstream="openai"),
    "chat_stream": Rule(Who.CALLER, method="POST", route="openai", tokens=True, upstream="openai"),
    "server_metadata": Rule(Who.CALLER, route="metadata"),
    "model_metadata": Rule(Who.CALLER, Models.READABLE, "GET", "metadata"),
    "model_ready": Rule(Who.CALLER, Models.READABLE, "GET", "ready"),
    "model_config": Rule(Who.CALLER, Models.READABLE, "GET", "config"),
    "model_stats": Rule(Who.CALLER, Models.READABLE, "GET", "stats"),
    "all_stats": Rule(Who.CALLER, route="stats"),  # every model's statistics, cut to the served ones
    "infer": Rule(Who.CALLER, Models.PUBLIC, "POST", "infer"),
    "generate": Rule(Who.CALLER, Models.PUBLIC, "POST", "generate"),
    "generate_stream": Rule(Who.CALLER, Models.PUBLIC, "POST", "generate_stream"),
    "model_trace": Rule(Who.ADMIN, Models.PUBLIC, route="admin"),
    "trace": Rule(Who.ADMIN, route="admin"),
    "logging": Rule(Who.ADMIN, route="admin"),
    "repository_index": Rule(Who.ADMIN, route="admin"),
    "model_load": Rule(Who.ADMIN, route="admin"),
    "model_unload": Rule(Who.ADMIN, route="admin"),
    "shared_memory": Rule(Who.NOBODY),
}


def never(operation: str) -> Forbidden:
    """The refusal of an operation nobody may call from outside."""
    return Forbidden(
        f"{operation.replace('_', ' ')} is not available through the front door", reason=operation
    )


# --- HTTP: KServe v2 paths and Triton's extensions ---

HEALTH_PATHS = {"/v2/health/live", "/v2/health/ready"}
MODEL = r"([A-Za-z0-9_.\-]{1,128})"
MODEL_ROUTE = re.compile(
    rf"^/v2/models/{MODEL}(?:/versions/([0-9]{{1,18}}))?"
    r"(?:/(ready|config|stats|infer|generate|generate_stream|trace/setting))?$"
)
MODEL_ACTIONS = {
    None: "model_metadata", "ready": "model_ready", "config": "model_config", "stats": "model_stats",
    "infer": "infer", "generate": "generate", "generate_stream": "generate_stream",
    "trace/setting": "model_trace",
}  # fmt: skip
REPOSITORY_ROUTE = re.compile(rf"^/v2/repository/models/{MODEL}/(load|unload)$")
PATHS = {
    "/v2": "server_metadata",
    "/v2/models/stats": "all_stats",
    "/v2/repository/index": "repository_index",
    "/v2/trace/setting": "trace",
    "/v2/logging": "logging",
}
SHARED_MEMORY_PATHS = ("/v2/systemsharedmemory", "/v2/cudasharedmemory")
BATCH_PATHS = ("/v1/files", "/v1/batches")  # OpenAI's Batch API (tritonfleet/batch), served by the /v1 app
OPENAI_OPERATIONS = frozenset({"openai", "batch"})  # what the /v1 app answers
CONSOLE_FILES = "/console/"  # the console's files; "/" is its page
CONSOLE_API = "/console/api/"
CHAT_STREAM = "/chat/stream"  # the SSE shape React chat examples read (tritonfleet/console/stream.py)


@dataclass(frozen=True)
class Call:
    """One request as the policy sees it: the operation and the model and version it names."""

    operation: str
    model: str = ""
    version: str = ""

    @property
    def rule(self) -> Rule:
        return OPERATIONS[self.operation]


def http_operation(path: str) -> Call | None:
    """The operation an HTTP path is, or None (not served)."""
    if path in HEALTH_PATHS:
        return Call("health")
    if path in BATCH_PATHS or path.startswith(tuple(f"{p}/" for p in BATCH_PATHS)):
        return Call("batch")
    if path == "/v1" or path.startswith("/v1/"):
        return Call("openai")
    if path.startswith(SHARED_MEMORY_PATHS):
        return Call("shared_memory")
    if path == "/" or path.startswith(CONSOLE_FILES):
        return Call("console_api" if path.startswith(CONSOLE_API) else "console_page")
    if path == CHAT_STREAM:
        return Call("chat_stream")
    if path in PATHS:
        return Call(PATHS[path])
    match = MODEL_ROUTE.match(path)
    if match:
        model, version, action = match.groups()
        return Call(MODEL_ACTIONS[action], model, version or "")
    match = REPOSITORY_ROUTE.match(path)
    if match:
        return Call(f"model_{match.group(2)}", match.group(1))
    return None


# --- gRPC: inference.GRPCInferenceService ---

GRPC_METHODS = {
    "ServerLive": "health",
    "ServerReady": "health",
    "ServerMetadata": "server_metadata",
    "ModelMetadata": "model_metadata",
    "ModelReady": "model_ready",
    "ModelConfig": "model_config",
    "ModelStatistics": "model_stats",  # "all_stats" when the request names no model
    "ModelInfer": "infer",
    "ModelStreamInfer": "infer",
    "RepositoryIndex": "repository_index",
    "RepositoryModelLoad": "model_load",
    "RepositoryModelUnload": "model_unload",
    "TraceSetting": "trace",  # its model, if it names one, is not restricted (admins only)
    "LogSettings": "logging",
}


# The route labels of requests that run a model (over gRPC the label is the method): what the Prometheus
# rules and the console's charts count as the fleet's work.
MODEL_ROUTES = (
    *(OPERATIONS[op].route for op in ("infer", "generate", "generate_stream", "openai")),
    *(method for method, op in GRPC_METHODS.items() if op == "infer"),
)


def grpc_operation(method: str) -> str | None:
    """The operation a gRPC method is, or None (not served)."""
    if "SharedMemory" in method:
        return "shared_memory"
    return GRPC_METHODS.get(method)


# --- The models a call may name ---


@dataclass
class PublicModels:
    """The models the front door serves: the public ones by name (their specs), the names of their inner
    steps, and the request limits."""

    models: dict[str, ModelSpec]
    limits: Limits = field(default_factory=Limits)
    steps: frozenset[str] = frozenset()

    @classmethod
    def from_repository(
        cls,
        repository: Path,
        loaded: list[str],
        target: str = "cpu",
        limits: Limits | None = None,
        public: list[str] | None = None,
    ) -> PublicModels:
        """The public models among ``loaded`` (the pipelines' declarations say which, unless ``public``
        names them), with their configs as ``target`` serves them."""
        repo = Repository(repository)
        public = [m for m in (public or list(pipelines.public_models())) if m in loaded]
        models = {}
        for name in public:
            spec = ModelSpec.from_config(repo.config(name, target), repo.root / name)
            models[name] = replace(spec, decoupled=_decoupled(repo, name, target))
        steps = frozenset(repo.closure(public, target)) - set(public)
        return cls(models, limits or Limits(), steps)

    @property
    def served(self) -> set[str]:
        """Every model a caller may read something of: the public ones and their steps."""
        return self.models.keys() | self.steps

    def model(self, name: str, version: str = "") -> ModelSpec:
        """The public model ``name`` (at ``version``, if given), else 404."""
        spec = self.models.get(name)
        if spec is None:
            raise NotFound(f"unknown model {name!r}", reason="unknown_model")
        if version and version not in spec.versions:
            raise NotFound(f"model {name!r} has no version {version!r}", reason="unknown_model")
        return spec

    def named(self, call: Call, method: str | None = None) -> ModelSpec | None:
        """The model ``call`` names, as its rule allows (404 otherwise): its spec, or None for a step read
        (or a call that names no restricted model). ``method``: the HTTP method (a step is read by the
        rule's method only); None over gRPC."""
        rule = call.rule
        if rule.models is Models.NONE:
            return None
        read = method is None or rule.method is None or method == rule.method
        if rule.models is Models.READABLE and call.model in self.steps and read:
            return None
        return self.model(call.model, call.version)


def _decoupled(repo: Repository, name: str, target: str) -> bool:
    """A model streams if its config says so, or (an ensemble) if any of its steps streams."""
    config = repo.config(name, target)
    if config.model_transaction_policy.decoupled:
        return True
    return any(_decoupled(repo, step.model_name, target) for step in config.ensemble_scheduling.step)


# --- What admins may not do remotely ---

FILE_SETTINGS = {"trace_file", "log_file"}  # trace and log settings that write files on the server
UPLOAD_PREFIX = "file:"  # a load request's parameters that carry model files


def refuse_file_writes(parameters: Iterable[str] = (), settings: Iterable[str] = ()) -> None:
    """Refuse an admin request that would write files on the server: model files uploaded with a load
    request (its ``parameters``), trace or log files set (its ``settings``)."""
    if any(str(name).startswith(UPLOAD_PREFIX) for name in parameters):
        raise ClientError("model files cannot be uploaded through the front door")
    if FILE_SETTINGS & set(settings):
        raise ClientError("trace and log files cannot be set through the front door")
