"""What both protocols of the front door ask before a request goes on: who is calling, may they, now?"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from tritonfleet.frontdoor.keys import Key, KeyStore, Limiter, retry_after
from tritonfleet.frontdoor.metrics import Metrics
from tritonfleet.frontdoor.validation import Catalog, ClientError

ANONYMOUS = "-"


class Refused(ClientError):
    """A request refused for its key, its rate or the server's state: carries the headers to answer with."""

    def __init__(self, status: int, message: str, reason: str, retry_s: float | None = None) -> None:
        super().__init__(status, message, reason)
        self.retry_after = retry_after(retry_s) if retry_s is not None else None


@dataclass
class State:
    """The supervisor's view, read by the front door: is Triton up, is every public pipeline answering."""

    up: bool = False
    ready: bool = False
    reason: str = "starting"
    lock: threading.Lock = field(default_factory=threading.Lock)


class AccessControl:
    """Keys, limits and server state, shared by the HTTP and gRPC front doors (thread-safe).

    ``require_keys``: refuse callers without a key even while the keys file is empty (a public address
    without ``--insecure``). With keys configured, every route but the health probes needs one; admin
    routes need an admin key whatever the configuration.
    """

    def __init__(
        self,
        catalog: Catalog,
        keys: KeyStore,
        *,
        require_keys: bool = False,
        metrics: Metrics | None = None,
        state: State | None = None,
    ) -> None:
        self.catalog = catalog
        self.keys = keys
        self.limiter = Limiter()
        self.require_keys = require_keys
        self.metrics = metrics or Metrics()
        self.state = state or State()
        self.on_model_fault: list = []  # callbacks(model): a stub reported unhealthy

    def authorize(
        self, authorization: str | None, *, admin: bool = False, tokens: bool = False
    ) -> Key | None:
        """The caller's key (None when keys are off), or :class:`Refused` (401, 403, 429)."""
        key = None
        if authorization and not self.keys.enabled and not self.require_keys:
            authorization = None  # no keys: open (on localhost); OpenAI clients always send one ("none")
        if authorization:
            scheme, _, secret = authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not secret.strip():
                raise Refused(401, "the Authorization header must be 'Bearer <key>'", "bad_key")
            key = self.keys.lookup(secret.strip())
            if key is None:
                raise Refused(401, "unknown or revoked API key", "bad_key")
        elif self.keys.enabled or self.require_keys or admin:
            if admin and not self.keys.enabled:
                raise Refused(403, "this API needs an admin key (fleet keys add NAME --admin)", "not_admin")
            raise Refused(401, "an API key is required: send 'Authorization: Bearer <key>'", "no_key")
        if admin and (key is None or not key.admin):
            raise Refused(403, "this API needs an admin key", "not_admin")
        if key is not None:
            wait = self.limiter.admit(key, tokens=tokens)
            if wait > 0:
                what = "tokens" if tokens and key.tpm and not key.rpm else "requests"
                raise Refused(
                    429, f"rate limit of key {key.name!r} reached ({what} per minute)", "rate", wait
                )
        return key

    def check_up(self) -> None:
        if not self.state.up:
            raise Refused(503, f"the server is not available ({self.state.reason}); retry", "unavailable", 2)

    def reject(self, reason: str) -> None:
        self.metrics.rejections.labels(reason).inc()

    def model_fault(self, model: str) -> None:
        for callback in self.on_model_fault:
            callback(model)
