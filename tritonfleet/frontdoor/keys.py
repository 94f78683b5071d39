"""API keys of the front door: stored hashed in ``$TRITONFLEET_HOME/keys.json``, with per-key limits.

A key is shown once, when ``fleet keys add`` makes it; the file keeps its SHA-256 (keys are 256 random bits,
so a plain hash is as strong as a slow one). The front door re-reads the file when it changes, so keys are
added and revoked without a restart. Limits count per front door (per replica in Kubernetes).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

KEY_PREFIX = "tf-"


def home() -> Path:
    return Path(os.environ.get("TRITONFLEET_HOME") or Path.home() / ".config" / "tritonfleet")


def default_path() -> Path:
    return home() / "keys.json"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Key:
    """One client's key: its name, the hash of the secret, its limits (0: none) and whether it is admin."""

    name: str
    sha256: str
    rpm: int = 0  # requests per minute
    tpm: int = 0  # tokens per minute (/v1)
    admin: bool = False
    created: str = ""
    # Batch jobs (tritonfleet/batch; 0: the fleet's defaults): largest input file (MB), lines a batch,
    # batches in flight. Batch tokens are counted apart from ``tpm``.
    batch_file_mb: int = 0
    batch_lines: int = 0
    batches: int = 0


class KeysError(ValueError):
    """A key operation that cannot be done (duplicate or unknown name)."""


class KeyFile:
    """The keys file: read, add, revoke (atomic rewrite, mode 0600)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else default_path()

    def load(self) -> list[Key]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        return [Key(**entry) for entry in data.get("keys", [])]

    def save(self, keys: list[Key]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".keys-")
        with os.fdopen(fd, "w") as f:
            json.dump({"keys": [asdict(k) for k in keys]}, f, indent=1)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def add(
        self,
        name: str,
        *,
        rpm: int = 0,
        tpm: int = 0,
        admin: bool = False,
        batch_file_mb: int = 0,
        batch_lines: int = 0,
        batches: int = 0,
    ) -> str:
        """Add a key named ``name`` and return its secret (the only time it is known)."""
        if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise KeysError(f"key name {name!r}: use letters, digits, '-', '_' or '.'")
        if min(rpm, tpm, batch_file_mb, batch_lines, batches) < 0:
            raise KeysError("limits are >= 0 (0: no limit)")
        keys = self.load()
        if any(k.name == name for k in keys):
            raise KeysError(f"a key named {name!r} exists: revoke it first")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        keys.append(Key(name, digest(secret), rpm, tpm, admin, created, batch_file_mb, batch_lines, batches))
        self.save(keys)
        return secret

    def revoke(self, name: str) -> None:
        keys = self.load()
        if not any(k.name == name for k in keys):
            raise KeysError(f"no key named {name!r}")
        self.save([k for k in keys if k.name != name])


class KeyStore:
    """What the front door asks: which key is this secret? Re-reads the file when it changed (checked at
    most once per ``recheck_s``), so ``fleet keys add/revoke`` apply to a running server."""

    def __init__(self, path: Path | None = None, recheck_s: float = 1.0) -> None:
        self.file = KeyFile(path)
        self.recheck_s = recheck_s
        self._by_hash: dict[str, Key] = {}
        self._stamp: tuple[int, int] | None = None
        self._checked = -math.inf
        self._lock = threading.Lock()
        self._refresh(force=True)

    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < self.recheck_s:
            return
        with self._lock:
            self._checked = now
            try:
                st = self.file.path.stat()
                stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                stamp = None
            if stamp != self._stamp or force:
                keys = self.file.load() if stamp else []
                self._by_hash = {k.sha256: k for k in keys}
                self._stamp = stamp

    @property
    def enabled(self) -> bool:
        """True when any key exists: then every route but the health probes needs one."""
        self._refresh()
        return bool(self._by_hash)

    def by_name(self, name: str) -> Key | None:
        self._refresh()
        return next((k for k in self._by_hash.values() if k.name == name), None)

    def lookup(self, secret: str) -> Key | None:
        self._refresh()
        return self._by_hash.get(digest(secret))


class Bucket:
    """A token bucket refilled at ``per_minute`` a minute, holding at most that many."""

    def __init__(self, per_minute: int) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.level = float(per_minute)
        self.stamp = time.monotonic()

    def _fill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, amount: float = 1.0) -> float:
        """Take ``amount`` if the bucket holds it and return 0, else the seconds until it will."""
        now = time.monotonic()
        self._fill(now)
        if self.level >= amount:
            self.level -= amount
            return 0.0
        return (amount - self.level) / self.rate

    def charge(self, amount: float) -> None:
        """Take ``amount`` after the fact (tokens a request used); the level may go below zero."""
        self._fill(time.monotonic())
        self.level -= amount


class Limiter:
    """Per-key requests-per-minute and tokens-per-minute buckets (thread-safe)."""

    def __init__(self) -> None:
        self._rpm: dict[str, Bucket] = {}
        self._tpm: dict[str, Bucket] = {}
        self._lock = threading.Lock()

    def _bucket(self, table: dict[str, Bucket], key: Key, per_minute: int) -> Bucket:
        bucket = table.get(key.name)
        if bucket is None or bucket.capacity != per_minute:
            bucket = table[key.name] = Bucket(per_minute)
        return bucket

    def admit(self, key: Key, *, tokens: bool = False) -> float:
        """0 when ``key`` may send a request now, else the seconds to wait (Retry-After). ``tokens``: the
        request uses tokens (/v1), so it also waits while the key's token budget is spent."""
        with self._lock:
            if tokens and key.tpm:
                tb = self._bucket(self._tpm, key, key.tpm)
                tb._fill(time.monotonic())
                if tb.level <= 0:
                    return -tb.level / tb.rate + 1e-3
            if key.rpm:
                return self._bucket(self._rpm, key, key.rpm).take()
            return 0.0

    def used_tokens(self, key: Key, tokens: int) -> None:
        if key.tpm and tokens > 0:
            with self._lock:
                self._bucket(self._tpm, key, key.tpm).charge(tokens)
