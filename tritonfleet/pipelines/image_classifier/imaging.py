"""Image preprocessing for EfficientNet-Lite0: the single source of truth.

Used by the Triton Python model ``image_preprocess`` (inside Triton's Python backend stub, so only numpy
and Pillow here: no torch, fast import), by the export check in ``build/image_classifier/export_onnx.py``
and by benchmarks. Encoded bytes -> RGB ``PIL.Image`` (:func:`decode`) -> float32 [3, 224, 224]
(:func:`to_tensor`).

Normalization and resize filter, chosen empirically on this checkpoint (efficientnet-lite0-57934424.pth,
converted from TF) with the exported model on skimage's photos. Probability of the right classes:

    normalization          filter    chelsea cats 281-285  coffee espresso  rocket missile+projectile
    (x - 127) / 128        bilinear  0.922                 0.957            0.639
    (x - 127) / 128        bicubic   0.920                 0.951            0.479
    ImageNet mean/std      bilinear  0.863                 0.843            0.558
    ImageNet mean/std      bicubic   0.854                 0.779            0.320

TF's [-1, 1] scaling (what the TF original was trained with) wins on every photo, and Pillow's
antialiased bilinear beats its bicubic with either normalization (and is cheaper).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

from tritonfleet.errors import ClientError

INPUT_SIZE = 224
RESIZE_SIZE = 256  # shorter side before the center crop: INPUT_SIZE / 0.875
DEFAULT_MAX_PIXELS = 40_000_000
MEAN = 127.0
STD = 128.0
BACKGROUND = (255, 255, 255)  # transparent pixels are composited on white

# 16-bit grayscale PNG/TIFF open as "I;16*" (older Pillow: "I"); scaled to 8 bits, not clipped at 255.
_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})


class ImageError(ClientError):
    """An input that is not a usable image (the client's mistake); the message says why, for the caller."""


def decode(data: bytes, *, max_pixels: int) -> Image.Image:
    """Decode encoded image bytes into an upright RGB image.

    The pixel count is checked from the header before any pixel data is decoded. EXIF orientation is
    applied. Transparent images (RGBA, LA, P with transparency, ...) are composited on white, so
    transparent areas look like a white page rather than whatever colour hides under alpha 0. 16-bit
    grayscale is scaled to 8 bits. Truncated files are errors. Raises :class:`ImageError`.

    Pillow's own decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``, ~89M: a warning, an error over
    twice that) also applies; its warning is left alone (catching it is not thread-safe, and callers
    decode in threads): with ``max_pixels`` below Pillow's limit such images are rejected here anyway.
    """
    if not data:
        raise ImageError("empty input: expected encoded image bytes (JPEG, PNG, ...)")
    try:
        img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # the warning if -W error
        raise ImageError(f"image is too large: {exc}") from exc
    except Exception as exc:  # Pillow raises many types on hostile input: report them all alike.
        raise ImageError(f"not a decodable image ({type(exc).__name__}: {exc})") from exc
    width, height = img.size
    if width * height > max_pixels:
        raise ImageError(
            f"image is {width}x{height} = {width * height} pixels, "
            f"over the limit of {max_pixels} (max_pixels)"
        )
    try:
        # JPEG only: let libjpeg decode at 1/2, 1/4 or 1/8 scale, never below the resize target.
        img.draft(None, (RESIZE_SIZE, RESIZE_SIZE))
        img.load()
        ImageOps.exif_transpose(img, in_place=True)
        return _to_rgb(img)
    except Exception as exc:
        raise ImageError(f"not a decodable image ({type(exc).__name__}: {exc})") from exc


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB."""
    if img.mode == "RGB":
        return img
    if img.mode in _SIXTEEN_BIT_MODES:
        scaled = np.asarray(img, dtype=np.float32) * (255.0 / 65535.0) + 0.5
        img = Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), "L")
    if img.has_transparency_data:
        rgba = img.convert("RGBA")
        background = Image.new("RGB", img.size, BACKGROUND)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def to_tensor(img: Image.Image) -> np.ndarray:
    """RGB image -> float32 [3, 224, 224]: shorter side to 256 (bilinear), center 224 crop, (x-127)/128.

    Resize and crop are one Pillow call: the centered 224/256 square of the source is resized to
    224x224, which equals resizing to 256 then cropping 224, without the intermediate image.
    """
    if img.mode != "RGB":
        raise ValueError(f"expected an RGB image, got mode {img.mode!r}; use decode()")
    width, height = img.size
    side = min(width, height) * INPUT_SIZE / RESIZE_SIZE
    left, top = (width - side) / 2, (height - side) / 2
    img = img.resize(
        (INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side)
    )
    pixels = np.asarray(img)  # uint8 [224, 224, 3]
    out = np.empty((3, INPUT_SIZE, INPUT_SIZE), dtype=np.float32)
    np.subtract(pixels.transpose(2, 0, 1), MEAN, out=out, dtype=np.float32)
    out *= 1.0 / STD  # exact: STD is a power of two
    return out


def preprocess(data: bytes, *, max_pixels: int) -> np.ndarray:
    """Encoded image bytes -> float32 [3, 224, 224] model input. Raises :class:`ImageError`."""
    return to_tensor(decode(data, max_pixels=max_pixels))
