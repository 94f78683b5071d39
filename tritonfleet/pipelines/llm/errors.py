"""Whose fault a BLS step's error is, for the models that call other models (tensorrt_llm_bls and
tensorrt_llm_passthrough).

Triton 24.10's Python backend gives a BLS caller every error of the model it called as INTERNAL:
python_backend r24.10's ``request_executor.cc`` builds the response's error from the message alone. So a
caller tells a real fault from a client's mistake by the message: the only place the fleet does, because
the code is Triton's. The faults that can reach it are those Triton and the Python stub report (an exception
raised in a model, a dead stub, a model that is not loaded, a failed allocation) and the fleet's models' own
faults (:func:`tritonfleet.errors.fault`, the CPU engine's failures); every other error a step sends is about
the request (a step's validation, a :class:`tritonfleet.errors.ClientError`).
"""

from __future__ import annotations

from tritonfleet.errors import INTERNAL_ERROR

ENGINE_FAILURE = "engine failure"  # how tensorrt_llm (CPU) starts the message of an engine's failure


FAULTS = (
    "Failed to process the request(s) for model",  # an exception in a model's execute (the stub's message)
    "Stub process",  # "Stub process '<model>_0_0' is not healthy."
    "is not ready",
    "is not found",
    "Unexpected empty response",
    "Failed to retrieve the response error",
    "shared memory",
    ENGINE_FAILURE,
    INTERNAL_ERROR,  # tritonfleet.errors.fault()
)


def is_fault(message: str) -> bool:
    """Whether a step's error message reports a fault of the server, not a mistake in the request."""
    return any(marker in message for marker in FAULTS)
