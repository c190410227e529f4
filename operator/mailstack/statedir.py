"""The ``--state`` directory: generated material kept across runs, as the cluster keeps Secrets.

Layout: ``secrets/<namespace>/<name>/<key>`` holds the data of each generated Secret, one file per
key (mode 0600), exactly the bytes the cluster's Secret would hold. ``ca.crt`` and
``records.zone`` are conveniences for people and clients. Files are replaced atomically.
"""

from __future__ import annotations

import base64
import os
import tempfile
from pathlib import Path
from typing import Any

from mailstack.api.models import Secret


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class StateDir:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def secrets(self, namespace: str) -> dict[str, Secret]:
        base = self.root / "secrets" / namespace
        result: dict[str, Secret] = {}
        if not base.is_dir():
            return result
        for folder in sorted(p for p in base.iterdir() if p.is_dir()):
            data = tuple(
                sorted(
                    (f.name, f.read_bytes())
                    for f in folder.iterdir()
                    if f.is_file() and not f.name.startswith(".")
                )
            )
            result[folder.name] = Secret(name=folder.name, namespace=namespace, data=data)
        return result

    def save_secret(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        folder = self.root / "secrets" / meta["namespace"] / meta["name"]
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        wanted = set(obj.get("data", {}))
        for key, value in obj.get("data", {}).items():
            write_atomic(folder / key, base64.b64decode(value), 0o600)
        for stale in folder.iterdir():
            if stale.is_file() and stale.name not in wanted and not stale.name.startswith("."):
                stale.unlink()

    def write_file(self, name: str, text: str) -> Path:
        path = self.root / name
        write_atomic(path, text.encode())
        return path
