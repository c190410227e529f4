"""Detect changes of mounted ConfigMap/Secret directories.

The kubelet updates a mounted ConfigMap or Secret by swapping a ``..data`` symlink, so watching
mtimes of the visible names is unreliable; a digest of the resolved contents is not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path


def fingerprint(directories: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for directory in directories:
        root = Path(directory)
        if not root.is_dir():
            digest.update(f"missing:{directory}\n".encode())
            continue
        for path in sorted(root.iterdir()):
            if path.name.startswith(".."):
                continue  # the kubelet's timestamped folders; their content is seen via links
            try:
                data = path.read_bytes() if path.is_file() else b""
            except OSError:
                data = b"<unreadable>"
            digest.update(f"{path}\0".encode())
            digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()
