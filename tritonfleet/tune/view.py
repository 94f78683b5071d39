"""The repository view Model Analyzer reads: the same models, each ``config.pbtxt`` the tuned target's.

Model Analyzer reads ``<repository>/<model>/config.pbtxt``, the GPU config here, and asks the server to load
its variants of it; on the CPU server that fails ("no backend 'tensorrt'"). The view holds, for the model
and every model its ensemble or BLS steps call, the config the target serves (``configs/cpu.pbtxt`` where
present, a plan's ``configs/NAME.pbtxt``, else ``config.pbtxt``) as ``config.pbtxt``, and links to the
version folders (Model Analyzer in remote mode reads only the config; the server loads from the real
repository).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tritonfleet.repository import Repository, config_path, named_config_path

CPU = "cpu"


def target_config(model_dir: Path, target: str) -> Path:
    """The config file ``target`` serves for the model at ``model_dir``."""
    return config_path(model_dir, CPU) if target == CPU else named_config_path(model_dir, target)


def make(repository: Path, model: str, target: str, out: Path) -> list[str]:
    """Write the view of ``model`` (and what it calls) for ``target`` into ``out``; the models in it."""
    repo = Repository(repository)
    names = repo.closure([model], CPU if target == CPU else "gpu")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for name in names:
        source = repository / name
        (out / name).mkdir()
        shutil.copyfile(target_config(source, target), out / name / "config.pbtxt")
        for version in source.iterdir():
            if version.is_dir() and version.name.isdigit():
                (out / name / version.name).symlink_to(version.resolve(), target_is_directory=True)
    return names
