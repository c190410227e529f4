"""Detect changes of mounted ConfigMap/Secret directories.

The kubelet updates a mounted ConfigMap or Secret by swapping a ``..data`` symlink, so watching
mtimes of the visible names is unreliable; a fingerprint of the resolved contents is not.

The fingerprint is built with ``hash()`` (64-bit SipHash, seeded per process): it is only ever
compared with another fingerprint from the same agent process, and unlike hashlib it does not
load OpenSSL into every agent.
"""

from __future__ import annotations

import os

# Not typing.TYPE_CHECKING (see mailstack.agent.command).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable


def fingerprint(directories: Iterable[str]) -> int:
    """A value that changes when a file in ``directories`` appears, goes or changes content."""
    seen: list[tuple[str, int]] = []
    for directory in directories:
        if not os.path.isdir(directory):
            seen.append((directory, -1))
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
                    data = b"<not a file>"
            except OSError:
                data = b"<unreadable>"
            seen.append((path, hash(data)))
    return hash(tuple(seen))
