"""The console's static files (the page, its bundled script and style), answered by the front door itself.

The files are the build output of ``web/`` (esbuild, at set-up: ``scripts/setup.sh console``) in
``static/``, shipped in the package: the console needs no network once installed. They hold no data, so
they load without a key (the front door's policy, ``console_page``): with keys configured the page shows
its login screen, and every request it makes for data carries the key. Every answer carries a strict
Content-Security-Policy: scripts and styles from this origin only, no inline script or style, no frames,
nothing sent elsewhere.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from tritonfleet.frontdoor.policy import CONSOLE_FILES

STATIC = Path(__file__).parent / "static"
INDEX = "index.html"
TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".png": b"image/png",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
]
NOT_FOUND = b"<!doctype html><title>not found</title><p>not found"
MISSING = (
    b"<!doctype html><title>tritonfleet console</title><h1>The console is not built</h1>"
    b"<p>Its bundle is made at set-up: run <code>scripts/setup.sh console</code> (needs npm) and reload.</p>"
)


@dataclass(frozen=True)
class Asset:
    body: bytes
    etag: bytes
    stamp: tuple[int, int]


_cache: dict[str, Asset] = {}


def _load(name: str) -> Asset | None:
    """A file of ``static/`` (read again when it changed on disk), or None."""
    path = STATIC / name
    try:
        st = path.stat()
    except OSError:
        return None
    stamp = (st.st_mtime_ns, st.st_size)
    cached = _cache.get(name)
    if cached is None or cached.stamp != stamp:
        body = path.read_bytes()
        cached = Asset(body, b'"' + hashlib.sha256(body).hexdigest()[:32].encode() + b'"', stamp)
        _cache[name] = cached
    return cached


def answer(method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """The answer to a request for the page (``/``) or a file (``/console/NAME``): ``(status, body,
    headers)``."""
    if method not in ("GET", "HEAD"):
        return 405, b"", [*SECURITY_HEADERS, (b"allow", b"GET, HEAD")]
    name = INDEX if path == "/" else path.removeprefix(CONSOLE_FILES)
    suffix = Path(name).suffix
    if "/" in name or name.startswith(".") or suffix not in TYPES:
        return 404, NOT_FOUND, [*SECURITY_HEADERS, (b"content-type", TYPES[".html"])]
    asset = _load(name)
    if asset is None:
        if name == INDEX:
            return 503, MISSING, [*SECURITY_HEADERS, (b"content-type", TYPES[".html"])]
        return 404, NOT_FOUND, [*SECURITY_HEADERS, (b"content-type", TYPES[".html"])]
    common = [*SECURITY_HEADERS, (b"etag", asset.etag), (b"cache-control", b"no-cache")]
    if headers.get("if-none-match", "").encode() == asset.etag:
        return 304, b"", common
    body = b"" if method == "HEAD" else asset.body
    return 200, body, [*common, (b"content-type", TYPES[suffix])]


def page_weight() -> dict[str, int]:
    """The bytes of every file the page loads (all of ``static/``), by name."""
    if not STATIC.is_dir():
        return {}
    return {p.name: p.stat().st_size for p in sorted(STATIC.iterdir()) if p.suffix in TYPES}
