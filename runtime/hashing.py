"""sha256 of model files: streamed, and cached by (path, size, mtime) so a 4 GB checkpoint is hashed once."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from .errors import RenderError

_CHUNK = 8 * 1024 * 1024


def default_cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dfm" / "hashes.json"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _read_cache(cache_file: Path) -> dict:
    try:
        data = json.loads(cache_file.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # a missing or corrupt cache only costs a re-hash


def _write_cache(cache_file: Path, data: dict) -> None:
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_file.parent, prefix=".hashes.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, cache_file)  # atomic: a concurrent render never reads half a file
    except OSError:
        pass  # caching is an optimisation; a read-only home must not fail the render


def cached_sha256(path: Path, cache_file: Path | None = None) -> str:
    """The file's sha256, from the cache when path, size and mtime are unchanged."""
    path = Path(path).resolve()
    cache_file = cache_file or default_cache_file()
    st = path.stat()
    key = str(path)
    cache = _read_cache(cache_file)
    hit = cache.get(key)
    if isinstance(hit, dict) and hit.get("size") == st.st_size and hit.get("mtime_ns") == st.st_mtime_ns:
        return str(hit["sha256"])
    digest = sha256_file(path)
    cache = _read_cache(cache_file)  # re-read: another process may have added entries meanwhile
    cache[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    _write_cache(cache_file, cache)
    return digest


def verify_sha256(path: Path, expected: str, cache_file: Path | None = None) -> str:
    """Raise RenderError unless the file's sha256 is `expected` (hex, any case)."""
    want = expected.strip().lower()
    got = cached_sha256(path, cache_file)
    if got != want:
        raise RenderError(
            f"model file {path} has sha256 {got}, but the scene expects {want}",
            "the file is corrupt, truncated or a different model: download it again, or update the "
            "sha256 in the scene if you changed models on purpose",
        )
    return got
