"""What both protocols of the front door ask before a request goes on: who is calling, may they, now?"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from tritonfleet.errors import Error, Forbidden, RateLimited, Unauthenticated, Unavailable
from tritonfleet.frontdoor.keys import Key, KeyStore, Limiter
from tritonfleet.frontdoor.metrics import Metrics
from tritonfleet.frontdoor.policy import Call, PublicModels, Who, never

ANONYMOUS = "-"  # the key name of a call without a key, in the metrics
DOWN_RETRY_S = 2  # how long a client waits before it retries while Triton is down


def key_of(error: Error, default: str) -> str:
    """The key name a refused call is counted as: its own where the refusal names it (over its rate)."""
    return getattr(error, "key", None) or default


def upstream_down() -> Unavailable:
    """The answer while Triton cannot be reached (it died, the supervisor is restarting it)."""
    return Unavailable("the server is not available; retry", DOWN_RETRY_S)


@dataclass
class ServerState:
    """The supervisor's view, read by the front door: is Triton up, is every public pipeline answering."""

    up: bool = False
    ready: bool = False
    reason: str = "starting"
    lock: threading.Lock = field(default_factory=threading.Lock)


class AccessControl:
    """Keys, limits, the public models and the server's state, shared by the HTTP and gRPC front doors
    (thread-safe).

    ``require_keys``: refuse callers without a key even while the keys file is empty (a public address
    without ``--insecure``). With keys configured, every route but the health probes needs one; admin
    routes need an admin key whatever the configuration.
    """

    def __init__(
        self,
        public: PublicModels,
        keys: KeyStore,
        *,
        require_keys: bool = False,
        metrics: Metrics | None = None,
        state: ServerState | None = None,
    ) -> None:
        self.public = public
        self.keys = keys
        self.limiter = Limiter()
        self.require_keys = require_keys
        self.metrics = metrics or Metrics()
        self.state = state or ServerState()
        self.on_dead_stub: list[Callable[[str], object]] = []  # callbacks(model): its stub died

    def admit(self, call: Call, authorization: str | None, *, tokens: bool = False) -> str:
        """The name of the caller's key (:data:`ANONYMOUS` without one) if the policy lets it make ``call``
        now; else :class:`~tritonfleet.errors.ClientError` (401, 403, 429) or
        :class:`~tritonfleet.errors.Unavailable`. ``tokens``: the call is charged tokens per minute too."""
        rule = call.rule
        if rule.who is Who.NOBODY:
            raise never(call.operation)
        if rule.who is Who.ANYONE:
            return ANONYMOUS
        key = self.authorize(authorization, admin=rule.who is Who.ADMIN, tokens=tokens)
        self.check_available()
        return key.name if key else ANONYMOUS

    def authorize(
        self, authorization: str | None, *, admin: bool = False, tokens: bool = False
    ) -> Key | None:
        """The caller's key (None when keys are off), or a refusal (401, 403, 429)."""
        key = None
        if authorization and not self.keys.enabled and not self.require_keys:
            authorization = None  # no keys: open (on localhost); OpenAI clients always send one ("none")
        if authorization:
            scheme, _, secret = authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not secret.strip():
                raise Unauthenticated("the Authorization header must be 'Bearer <key>'", reason="bad_key")
            key = self.keys.lookup(secret.strip())
            if key is None:
                raise Unauthenticated("unknown or revoked API key", reason="bad_key")
        elif self.keys.enabled or self.require_keys or admin:
            if admin and not self.keys.enabled:
                raise Forbidden(
                    "this API needs an admin key (fleet keys add NAME --admin)", reason="not_admin"
                )
            raise Unauthenticated(
                "an API key is required: send 'Authorization: Bearer <key>'", reason="no_key"
            )
        if admin and (key is None or not key.admin):
            raise Forbidden("this API needs an admin key", reason="not_admin")
        if key is not None:
            wait = self.limiter.admit(key, tokens=tokens)
            if wait > 0:
                what = "tokens" if tokens and key.tpm and not key.rpm else "requests"
                raise RateLimited(
                    f"rate limit of key {key.name!r} reached ({what} per minute)",
                    wait,
                    reason="rate",
                    key=key.name,
                )
        return key

    def check_available(self) -> None:
        """:class:`~tritonfleet.errors.Unavailable` while Triton is down (the supervisor restarts it)."""
        if not self.state.up:
            raise Unavailable(f"the server is not available ({self.state.reason}); retry", DOWN_RETRY_S)

    def count_rejection(self, reason: str) -> None:
        self.metrics.rejections.labels(reason).inc()

    def report_dead_stub(self, model: str) -> None:
        """Tell the supervisor that ``model``'s stub died (an answer said so)."""
        for callback in self.on_dead_stub:
            callback(model)
