"""Unit tests of tritonfleet.pipelines.image_classifier.imaging on real photos and hostile inputs (no
server)."""

from __future__ import annotations

import contextlib
import io
import struct
import warnings
import zlib

import numpy as np
import pytest
import skimage.data
from PIL import Image

from tritonfleet.pipelines.image_classifier.imaging import (
    DEFAULT_MAX_PIXELS,
    INPUT_SIZE,
    ImageError,
    decode,
    preprocess,
    to_tensor,
)

SHAPE = (3, INPUT_SIZE, INPUT_SIZE)
WHITE = (255 - 127) / 128


def encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def run(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    return preprocess(data, max_pixels=max_pixels)


def png_header_only(width: int, height: int) -> bytes:
    """A 1-bit grayscale PNG declaring width x height whose pixel data is missing: undecodable."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def chelsea() -> Image.Image:
    return Image.fromarray(skimage.data.chelsea())


@pytest.mark.parametrize("name", ["chelsea", "coffee"])
def test_photos_jpeg_and_png(name: str) -> None:
    img = Image.fromarray(getattr(skimage.data, name)())
    png, jpeg = run(encode(img, "PNG")), run(encode(img, "JPEG", quality=95))
    for x in (png, jpeg):
        assert x.shape == SHAPE
        assert x.dtype == np.float32
        assert x.flags.c_contiguous
        assert -1.0 <= x.min() < -0.5 and 0.5 < x.max() <= 1.0
    assert np.abs(png - jpeg).mean() < 0.02
    np.testing.assert_array_equal(png, to_tensor(img))  # PNG is lossless: same as the array itself


@pytest.mark.parametrize(
    ("orientation", "stored"),
    [(3, Image.Transpose.ROTATE_180), (6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270)],
)
def test_exif_orientation_is_applied(chelsea: Image.Image, orientation: int, stored: Image.Transpose) -> None:
    upright = run(encode(chelsea, "JPEG", quality=95))
    rotated = chelsea.transpose(stored)
    exif = Image.Exif()
    exif[0x0112] = orientation
    assert decode(encode(rotated, "JPEG", quality=95, exif=exif), max_pixels=DEFAULT_MAX_PIXELS).size == (
        chelsea.size
    )
    with_exif = run(encode(rotated, "JPEG", quality=95, exif=exif))
    assert np.abs(with_exif - upright).mean() < 0.02
    assert np.abs(run(encode(rotated, "JPEG", quality=95)) - upright).mean() > 0.1  # EXIF mattered


MODES = [("L", "PNG"), ("L", "JPEG"), ("1", "PNG"), ("P", "PNG"), ("P", "GIF"), ("RGBA", "PNG")]
MODES += [("LA", "PNG"), ("CMYK", "JPEG"), ("CMYK", "TIFF"), ("I;16", "PNG"), ("I;16", "TIFF")]
MODES += [("RGB", "WEBP"), ("RGB", "BMP")]


@pytest.mark.parametrize(("mode", "fmt"), MODES)
def test_any_mode_gives_rgb_tensor(chelsea: Image.Image, mode: str, fmt: str) -> None:
    img = Image.fromarray(np.asarray(chelsea.convert("L"), np.uint16) * 257) if mode == "I;16" else None
    img = img or chelsea.convert(mode)
    assert decode(encode(img, fmt), max_pixels=DEFAULT_MAX_PIXELS).mode == "RGB"
    x = run(encode(img, fmt))
    assert x.shape == SHAPE and x.dtype == np.float32
    assert 0.2 < x.std() < 1.0  # still a picture, not a flat or clipped image


def test_sixteen_bit_is_scaled_not_clipped() -> None:
    img = Image.fromarray(np.full((40, 50), 200 * 257, np.uint16))
    assert img.mode == "I;16"
    np.testing.assert_allclose(run(encode(img, "PNG")), (200 - 127) / 128)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_pixels_become_white(mode: str) -> None:
    img = Image.new("RGBA", (300, 260), (0, 0, 0, 0)).convert(mode)
    np.testing.assert_allclose(run(encode(img, "PNG")), WHITE)


def test_palette_transparency_becomes_white() -> None:
    img = Image.new("P", (300, 260), 0)
    img.putpalette([0, 0, 0] * 256)
    np.testing.assert_allclose(run(encode(img, "PNG", transparency=0)), WHITE)


@pytest.mark.parametrize("size", [(1, 1), (3, 900), (900, 3), (224, 224)])
def test_odd_sizes(size: tuple[int, int]) -> None:
    assert run(encode(Image.new("RGB", size, (10, 20, 30)), "PNG")).shape == SHAPE


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty input"),
        (np.random.default_rng(0).bytes(5000), "not a decodable image"),
        (b"name,score\nchelsea,0.9\n" * 20, "not a decodable image"),
    ],
    ids=["empty", "random", "text"],
)
def test_bad_bytes(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        run(data)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_image(chelsea: Image.Image, fmt: str) -> None:
    data = encode(chelsea, fmt)
    with pytest.raises(ImageError, match=r"not a decodable image.*truncated"):
        run(data[: len(data) // 2])


def test_over_max_pixels_rejected_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    data = png_header_only(9000, 9000)  # 140 bytes; decoding would fail with a different error
    loads = []
    load = Image.Image.load
    monkeypatch.setattr(Image.Image, "load", lambda img: loads.append(img.size) or load(img))
    with pytest.raises(
        ImageError, match=r"9000x9000 = 81000000 pixels, over the limit of 40000000 \(max_pixels\)"
    ):
        run(data)
    assert loads == []  # refused from the header: no pixel was decoded
    small = io.BytesIO()
    Image.new("RGB", (300, 200)).save(small, "PNG")
    run(small.getvalue())
    assert (300, 200) in loads  # ...whereas an image under the limit is
    with pytest.raises(ImageError, match="over the limit of 100"):
        run(encode(Image.new("RGB", (11, 10)), "PNG"), max_pixels=100)


def test_pillow_decompression_bomb_guard() -> None:
    with pytest.raises(ImageError, match="too large"):  # over twice Image.MAX_IMAGE_PIXELS: an error
        run(png_header_only(20_000, 20_000), max_pixels=10**9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # over Image.MAX_IMAGE_PIXELS: a warning, an exception under -W error
        with pytest.raises(ImageError, match="too large"):
            run(png_header_only(10_000, 10_000), max_pixels=10**9)


def test_corrupted_bytes_only_raise_image_error(chelsea: Image.Image) -> None:
    rng = np.random.default_rng(1)
    for fmt in ("JPEG", "PNG", "GIF"):
        original = np.frombuffer(encode(chelsea.resize((120, 80)), fmt), np.uint8)
        for _ in range(15):
            data = original.copy()
            idx = rng.integers(0, len(data), 8)
            data[idx] = rng.integers(0, 256, len(idx))
            with contextlib.suppress(ImageError):  # some corruptions still decode
                assert run(data.tobytes()).shape == SHAPE
