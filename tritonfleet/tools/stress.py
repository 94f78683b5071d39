"""A storm of malformed requests at the front door (its fuzz test and ``fleet stress``): the families of
:func:`tritonfleet.tools.fuzz.http.http_cases` and :func:`tritonfleet.tools.fuzz.grpc.grpc_cases`, generated
from the public models' configs. Every one is a client's mistake: the front door must answer 4xx (gRPC: a
client-error code), never 5xx, and the server must live on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tritonclient.grpc import service_pb2 as pb

from tritonfleet.frontdoor.validation import ModelSpec
from tritonfleet.tools.fuzz.grpc import grpc_cases
from tritonfleet.tools.fuzz.http import http_cases


@dataclass
class StormResult:
    """What a storm of malformed requests got back."""

    answers: dict[tuple[str, str], int]  # (family, status) -> count
    failures: list[str]  # a 5xx, a hang, a server-error code, a correct request answered differently

    @property
    def sent(self) -> int:
        return sum(self.answers.values())


CLIENT_CODES = {"INVALID_ARGUMENT", "NOT_FOUND", "UNIMPLEMENTED", "PERMISSION_DENIED", "UNAUTHENTICATED"}


def run(
    http_url: str,
    grpc_url: str,
    specs: list[ModelSpec],
    *,
    http_count: int,
    grpc_count: int,
    seed: int = 1,
    correct: object = None,
    every: int = 500,
    timeout: float = 60.0,
    headers: dict[str, str] | None = None,
) -> StormResult:
    """Send ``http_count`` + ``grpc_count`` malformed requests (every family in turn); every ``every``
    requests call ``correct()`` (a correct request that raises AssertionError on a different answer)."""
    import grpc
    import requests

    rng = random.Random(seed)
    answers: dict[tuple[str, str], int] = {}
    failures: list[str] = []

    def note(family: str, status: str, ok: bool, detail: str = "") -> None:
        answers[(family, status)] = answers.get((family, status), 0) + 1
        if not ok and len(failures) < 50:
            failures.append(f"{family}: {status} {detail[:200]}")

    def check_correct(i: int) -> None:
        if correct is not None and i % every == 0:
            try:
                correct()  # type: ignore[operator]
            except Exception as exc:
                failures.append(f"correct request #{i}: {str(exc)[:200]}")

    auth = headers or {}
    session = requests.Session()
    cases = http_cases(specs, rng)
    for i in range(http_count):
        case = next(cases)
        try:
            r = session.request(
                case.method,
                f"http://{http_url}{case.path}",
                data=case.body,
                headers={**case.headers, **auth},
                timeout=timeout,
            )
            note(case.family, str(r.status_code), 400 <= r.status_code < 500, r.text)
        except requests.RequestException as exc:
            note(case.family, "no answer", False, str(exc))
        check_correct(i)
    metadata = tuple((k.lower(), v) for k, v in auth.items()) or None
    with grpc.insecure_channel(grpc_url, options=[("grpc.max_receive_message_length", -1)]) as channel:
        unary = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        stream = channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer")
        gcases = grpc_cases(specs, rng)
        for i in range(grpc_count):
            case = next(gcases)
            try:
                if case.method == "ModelInfer":
                    unary(case.body, timeout=timeout, metadata=metadata)
                    note(case.family, "OK", False, "a malformed request was answered")
                else:
                    got = [
                        pb.ModelStreamInferResponse.FromString(a)
                        for a in stream(iter([case.body]), timeout=timeout, metadata=metadata)
                    ]
                    refused = len(got) == 1 and bool(got[0].error_message)
                    note(case.family, "stream error" if refused else "stream answer", refused, str(got)[:200])
            except grpc.RpcError as exc:
                code = exc.code().name  # type: ignore[attr-defined]
                note(case.family, code, code in CLIENT_CODES, exc.details() or "")  # type: ignore[attr-defined]
            check_correct(http_count + i)
    return StormResult(answers, failures)
