"""Inventory specs: ``1xL4``, ``2xA100-40GB``, mixed lists ``1xL4,1xA100-40GB``, raw sizes ``2x24GiB``.

GPUs are numbered in the order the spec lists them (the CUDA device ids the plan's configs name), so a
mixed inventory's spec must list the cards in the order the node enumerates them.
"""

from __future__ import annotations

import re

from tritonfleet.plan.gpus import GIB, MIB, Gpu, lookup

MAX_GPUS = 64
_ITEM = re.compile(r"(?:(\d+)\s*[xX]\s*)?(.+)")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(GiB|GB|MiB|TiB)", re.IGNORECASE)
_UNITS = {"gib": GIB, "gb": 10**9, "mib": MIB, "tib": 1 << 40}


class SpecError(ValueError):
    """A spec that does not parse, naming the part and what is expected."""


def parse(spec: str) -> tuple[Gpu, ...]:
    """The GPUs ``spec`` names, GPU 0 first."""
    gpus: list[Gpu] = []
    parts = [p.strip() for p in spec.split(",")]
    if not spec.strip() or not all(parts):
        raise SpecError(f"empty GPU spec part in {spec!r}: expected e.g. 1xL4 or 2xA100-40GB,1x24GiB")
    for part in parts:
        match = _ITEM.fullmatch(part)
        assert match is not None  # the pattern matches any non-empty text
        count = int(match.group(1) or 1)
        if not 1 <= count <= MAX_GPUS:
            raise SpecError(f"{part!r}: the count must be 1..{MAX_GPUS}")
        gpus += [gpu(match.group(2))] * count
    if len(gpus) > MAX_GPUS:
        raise SpecError(f"{spec!r} names {len(gpus)} GPUs, more than {MAX_GPUS}")
    return tuple(gpus)


def gpu(text: str) -> Gpu:
    """A table name (``L4``) or a raw size (``24GiB``, ``80GB``)."""
    size = _SIZE.fullmatch(text.strip())
    if size:
        value, unit = float(size.group(1)), size.group(2)
        memory = int(value * _UNITS[unit.lower()])
        if memory < 256 * MIB:
            raise SpecError(f"{text!r}: a GPU needs at least 256 MiB")
        return Gpu(f"{size.group(1)}{unit}", memory, source="raw size from the spec")
    try:
        return lookup(text)
    except KeyError as exc:
        raise SpecError(exc.args[0]) from None


def canonical(gpus: tuple[Gpu, ...]) -> str:
    """The shortest spec for ``gpus``: runs of the same GPU as ``NxNAME``, in order."""
    runs: list[list] = []
    for g in gpus:
        if runs and runs[-1][0] == g:
            runs[-1][1] += 1
        else:
            runs.append([g, 1])
    return ",".join(f"{n}x{g.name}" for g, n in runs)


def default_name(gpus: tuple[Gpu, ...]) -> str:
    """A config name from the spec: ``1xL4`` -> ``1xl4``, ``2xA100-40GB`` -> ``2xa100-40gb``."""
    return re.sub(r"[^a-z0-9]+", "-", canonical(gpus).lower()).strip("-")
