"""Detect changes of mounted ConfigMap/Secret directories.

The kubelet updates a mounted ConfigMap or Secret by swapping a ``..data`` symlink, so watching
mtimes of the visible names is unreliable; a digest of the resolved contents is not.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable


def fingerprint(directories: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for directory in directories:
        if not os.path.isdir(directory):
            digest.update(f"missing:{directory}\n".encode())
            continue
        for name in sorted(os.listdir(directory)):
            if name.startswith(".."):
                continue  # the kubelet's timestamped folders; their content is seen via links
            path = os.path.join(directory, name)
            try:
                if os.path.isfile(path):
                    with open(path, "rb") as handle:
                        data = handle.read()
                else:
                    data = b""
            except OSError:
                data = b"<unreadable>"
            digest.update(f"{path}\0".encode())
            digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()
