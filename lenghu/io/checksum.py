"""Checksums of files, for provenance and the run registry."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_checksum(path: str | Path, chunk: int = 8 << 20) -> str:
    """SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
