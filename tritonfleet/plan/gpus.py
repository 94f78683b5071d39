"""The GPUs the planner knows, in one table: memory, precisions and compute capability from NVIDIA's data
sheets (A10G: AWS's G5 page, the card is AWS's own).

Memory is the data sheet's figure ("24 GB" GDDR6, "80 GB" HBM3), which for these cards is binary (an L4's
24 GB are 24 GiB of chips). Not all of it can be allocated: ECC on GDDR6 cards holds back about a sixteenth
(a T4 with ECC on reports 15 of its 16 GiB) and the driver keeps some, so the planner fills at most
``USABLE_FRACTION`` of each GPU. fp8 needs compute capability 8.9 (Ada) or 9.0 (Hopper); bf16 8.0 (Ampere).
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1 << 30
MIB = 1 << 20
USABLE_FRACTION = 0.93  # what a plan may fill: 7% for ECC, the driver and fragmentation


@dataclass(frozen=True)
class Gpu:
    """One GPU model. ``compute_capability`` and the precision flags are None for a raw size (``24GiB``)."""

    name: str
    memory_bytes: int
    compute_capability: tuple[int, int] | None = None
    fp16: bool | None = None
    bf16: bool | None = None
    int8: bool | None = None
    fp8: bool | None = None
    source: str = ""

    @property
    def usable_bytes(self) -> int:
        """What a plan may place on it: ``USABLE_FRACTION`` of its memory, rounded down to a MiB."""
        return int(self.memory_bytes * USABLE_FRACTION) // MIB * MIB

    @property
    def known(self) -> bool:
        return self.compute_capability is not None

    def supports(self, dtype: str) -> bool | None:
        """Whether it computes in ``dtype`` (float16, bfloat16, int8, fp8, float32); None when unknown."""
        if dtype == "float32":
            return True
        flag = {"float16": self.fp16, "bfloat16": self.bf16, "int8": self.int8, "fp8": self.fp8}[dtype]
        return flag

    def describe(self) -> str:
        if not self.known:
            return f"{self.name} (raw size: compute capability and precisions unknown)"
        cc = ".".join(map(str, self.compute_capability or ()))
        flags = [n for n, on in (("fp16", self.fp16), ("bf16", self.bf16), ("int8", self.int8),
                                 ("fp8", self.fp8)) if on]  # fmt: skip
        return f"{self.name} ({self.memory_bytes // GIB} GiB, compute capability {cc}, {'/'.join(flags)})"


def _gpu(name: str, gib: int, cc: tuple[int, int], source: str) -> Gpu:
    """A data-center GPU: fp16 and int8 tensor cores on all of these (Turing and later)."""
    return Gpu(name, gib * GIB, cc, fp16=True, bf16=cc >= (8, 0), int8=True, fp8=cc >= (8, 9), source=source)


_SHEETS = "https://www.nvidia.com/en-us/data-center/"
TABLE: dict[str, Gpu] = {
    g.name: g
    for g in (
        _gpu("T4", 16, (7, 5), _SHEETS + "tesla-t4/"),
        _gpu("A10", 24, (8, 6), _SHEETS + "products/a10-gpu/"),
        _gpu("A10G", 24, (8, 6), "https://aws.amazon.com/ec2/instance-types/g5/"),
        _gpu("A30", 24, (8, 0), _SHEETS + "products/a30-gpu/"),
        _gpu("L4", 24, (8, 9), _SHEETS + "l4/"),
        _gpu("A100-40GB", 40, (8, 0), _SHEETS + "a100/"),
        _gpu("A40", 48, (8, 6), _SHEETS + "a40/"),
        _gpu("L40", 48, (8, 9), _SHEETS + "l40/"),
        _gpu("L40S", 48, (8, 9), _SHEETS + "l40s/"),
        _gpu("A100-80GB", 80, (8, 0), _SHEETS + "a100/"),
        _gpu("H100-80GB", 80, (9, 0), _SHEETS + "h100/"),
        _gpu("H100-NVL", 94, (9, 0), _SHEETS + "h100/"),
        _gpu("H200", 141, (9, 0), _SHEETS + "h200/"),
    )
}
# Names people write for the same card; "A100" alone is ambiguous (40 or 80 GB) and stays unknown.
ALIASES = {"H100": "H100-80GB", "H100-SXM": "H100-80GB", "H100-PCIE": "H100-80GB", "H200-141GB": "H200"}


def lookup(name: str) -> Gpu:
    """The table's GPU for ``name`` (case-insensitive, aliases allowed); KeyError lists the known names."""
    wanted = name.strip().upper()
    wanted = ALIASES.get(wanted, wanted)
    for key, gpu in TABLE.items():
        if key.upper() == wanted:
            return gpu
    raise KeyError(f"unknown GPU {name!r}; known: {', '.join(TABLE)} (or a raw size such as 24GiB)")
