"""Where imgcls keeps caches (extracted features, decoded images, downloaded datasets).

Everything lives under ``$IMGCLS_CACHE`` (default ``~/.cache/imgcls``). Entries are keyed by a hash
of everything that determines their content, so a change of data, model or preprocessing never
reuses a stale entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def cache_dir(*parts: str) -> Path:
    root = Path(os.environ.get("IMGCLS_CACHE") or Path.home() / ".cache" / "imgcls").expanduser()
    return root.joinpath(*parts)


DIGEST_BYTES = 16


def content_key(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts (dict key order does not matter)."""
    # surrogateescape: a file name that is not UTF-8 hashes as its bytes
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8", "surrogateescape")
    return hashlib.sha256(blob).hexdigest()[:24]
