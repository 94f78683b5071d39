"""Read a Triton model repository with Triton's own protobuf schema.

Each model folder holds ``config.pbtxt`` (the GPU production config) and, where the CPU target differs,
``configs/cpu.pbtxt``. Triton's ``--model-config-name=cpu`` picks the latter and falls back to
``config.pbtxt`` where a model has none (ensembles, whose wiring is the same on both targets).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

ModelConfig = mc.ModelConfig

TARGETS = ("gpu", "cpu")


class ConfigError(ValueError):
    """A config file that does not parse with Triton's schema."""


def parse_config(path: Path) -> mc.ModelConfig:
    """Parse one ``.pbtxt`` file into Triton's ``ModelConfig`` message."""
    try:
        return text_format.Parse(path.read_text(), mc.ModelConfig())
    except text_format.ParseError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def config_path(model_dir: Path, target: str) -> Path:
    """The file Triton reads: ``configs/cpu.pbtxt`` where present for the CPU, else ``config.pbtxt``."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; expected one of {TARGETS}")
    if target == "cpu" and (model_dir / "configs" / "cpu.pbtxt").is_file():
        return model_dir / "configs" / "cpu.pbtxt"
    return model_dir / "config.pbtxt"


def named_config_path(model_dir: Path, name: str) -> Path:
    """What ``--model-config-name=NAME`` loads: ``configs/NAME.pbtxt`` where present, else ``config.pbtxt``
    ("gpu" names ``config.pbtxt`` itself)."""
    named = model_dir / "configs" / f"{name}.pbtxt"
    return named if name != "gpu" and named.is_file() else model_dir / "config.pbtxt"


@dataclass(frozen=True)
class Repository:
    """A model repository on disk."""

    root: Path

    def model_dirs(self) -> list[Path]:
        """Every folder that holds a ``config.pbtxt``, sorted by name."""
        return sorted(p.parent for p in self.root.glob("*/config.pbtxt"))

    def names(self) -> list[str]:
        return [d.name for d in self.model_dirs()]

    def config_names(self) -> list[str]:
        """Every NAME of a ``configs/NAME.pbtxt`` in any model folder (``cpu``, and plans'), sorted."""
        return sorted({p.stem for p in self.root.glob("*/configs/*.pbtxt")})

    def config(self, name: str, target: str = "cpu") -> mc.ModelConfig:
        model_dir = self.root / name
        if not (model_dir / "config.pbtxt").is_file():
            raise KeyError(f"no model {name!r} in {self.root}")
        return parse_config(config_path(model_dir, target))

    def configs(self, target: str = "cpu") -> Iterator[tuple[str, mc.ModelConfig]]:
        for model_dir in self.model_dirs():
            yield model_dir.name, parse_config(config_path(model_dir, target))

    def closure(self, names: list[str], target: str = "cpu") -> list[str]:
        """``names`` plus every model their ensembles and BLS steps need, dependencies first."""
        ordered: list[str] = []

        def visit(name: str) -> None:
            if name in ordered:
                return
            for dep in dependencies(self.config(name, target)):
                visit(dep)
            ordered.append(name)

        for name in names:
            visit(name)
        return ordered


def dependencies(config: mc.ModelConfig) -> list[str]:
    """Models a model calls: ensemble steps, and BLS targets named in the ``bls_models`` parameter."""
    deps = [step.model_name for step in config.ensemble_scheduling.step]
    bls = config.parameters.get("bls_models")
    if bls is not None:
        deps += [n.strip() for n in bls.string_value.split(",") if n.strip()]
    return list(dict.fromkeys(deps))
