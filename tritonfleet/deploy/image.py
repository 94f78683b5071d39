"""The GPU image's base, read from ``docker/image.env``: the one place its tag and versions are written.

``docker/Dockerfile`` takes them as build arguments (``make image``; compose reads the file as its ``.env``),
the Kubernetes generator labels what it writes with them, and tests check the pins that follow from them
(requires-python, the image's tritonclient, the tensorrt_backend tag, the TensorRT-LLM examples tag).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tritonfleet.artifacts import PROJECT_ROOT

IMAGE_ENV = PROJECT_ROOT / "docker" / "image.env"
_LINE = re.compile(r"([A-Z][A-Z0-9_]*)=(.*)")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class ImageError(ValueError):
    """``docker/image.env`` is missing a key or holds a value of the wrong form."""


@dataclass(frozen=True)
class Image:
    tag: str  # nvcr.io/nvidia/tritonserver:26.07-trtllm-python-py3
    digest: str  # "" until pinned
    release: str  # 26.07
    triton_version: str  # 2.71.0
    repo_tag: str  # r26.07: the tensorrt_backend branch compiled into the image
    tensorrt_version: str
    trtllm_version: str
    cuda_version: str
    cuda_driver_version: str
    python_version: str
    tritonclient: str  # the image's own tritonclient pin

    @property
    def reference(self) -> str:
        """What to pull: the tag, with its digest once pinned."""
        return f"{self.tag}@{self.digest}" if self.digest else self.tag

    @property
    def python_minor(self) -> tuple[int, int]:
        major, minor, *_ = self.python_version.split(".")
        return int(major), int(minor)

    @property
    def tensorrt_minor(self) -> str:
        return ".".join(self.tensorrt_version.split(".")[:2])


def read_env(path: Path = IMAGE_ENV) -> dict[str, str]:
    """``KEY=VALUE`` lines of an env file (comments and blank lines skipped); no shell expansion."""
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.fullmatch(line.strip())
        if not match:
            raise ImageError(f"{path}:{number}: not KEY=VALUE: {line!r}")
        values[match.group(1)] = match.group(2)
    return values


def load(path: Path = IMAGE_ENV) -> Image:
    values = read_env(path)
    keys = {
        "tag": "TRITON_IMAGE", "digest": "TRITON_IMAGE_DIGEST", "release": "TRITON_RELEASE",
        "triton_version": "TRITON_VERSION", "repo_tag": "TRITON_REPO_TAG",
        "tensorrt_version": "TENSORRT_VERSION", "trtllm_version": "TRTLLM_VERSION",
        "cuda_version": "CUDA_VERSION", "cuda_driver_version": "CUDA_DRIVER_VERSION",
        "python_version": "PYTHON_VERSION", "tritonclient": "IMAGE_TRITONCLIENT",
    }  # fmt: skip
    missing = [k for k in keys.values() if k not in values]
    if missing:
        raise ImageError(f"{path}: missing {', '.join(missing)}")
    image = Image(**{field: values[key] for field, key in keys.items()})
    problems = []
    if not re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-trtllm-python-py3", image.tag):
        problems.append(f"TRITON_IMAGE {image.tag!r} is not an NGC tritonserver trtllm-python-py3 tag")
    elif image.tag.split(":")[1].split("-")[0] != image.release:
        problems.append(f"TRITON_IMAGE {image.tag!r} is not release {image.release}")
    if image.digest and not _DIGEST.fullmatch(image.digest):
        problems.append(f"TRITON_IMAGE_DIGEST {image.digest!r} is not sha256:<64 hex>")
    if image.repo_tag != f"r{image.release}":
        problems.append(f"TRITON_REPO_TAG {image.repo_tag!r} is not r{image.release}")
    if image.tritonclient != image.triton_version:
        problems.append(f"IMAGE_TRITONCLIENT {image.tritonclient} is not the server's {image.triton_version}")
    if problems:
        raise ImageError(f"{path}: " + "; ".join(problems))
    return image
