"""Benchmarks. Each pipeline declares its own (``fleet bench <pipeline>``); the ones of the whole system
are listed here (``fleet bench <name>``)."""

from __future__ import annotations

from tritonfleet.bench import fleet, frontdoor
from tritonfleet.pipelines import Command

BENCHES = {
    "fleet": Command(
        "the whole fleet: time to ready and memory over fresh starts", fleet.arguments, fleet.run
    ),
    "frontdoor": Command(
        "the same requests straight to Triton and through the front door (and recovery times)",
        frontdoor.arguments,
        frontdoor.run,
    ),
}
