"""Materialise a pod's volumes the way the kubelet does.

ConfigMap and Secret volumes are folders whose visible names are symlinks into ``..data``, itself
a symlink to a timestamped folder that is swapped atomically on update; file modes follow
``defaultMode`` and the group is the pod's ``fsGroup`` (mapped to this host's group of the same
role: the image pins the gids, a host's Debian packages chose their own). emptyDirs live as long
as the pod; PVCs live under the state folder as long as the user keeps it.
"""

from __future__ import annotations

import base64
import grp
import os
import pwd
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mailstack.local.security import HostIds
from mailstack.render import layout

# The image pins these ids (render.layout); on this host the same accounts have their own.
_GROUP_NAMES = {
    layout.DOVECOT_GID: "dovecot",
    layout.RSPAMD_GID: "_rspamd",
    layout.CLAMAV_GID: "clamav",
}
_USER_NAMES = {layout.RSPAMD_UID: "_rspamd", layout.CLAMAV_UID: "clamav"}


def _host_id(number: int, names: dict[int, str], lookup: Callable[[str], int]) -> int:
    """This host's id for an id the image pins to the account ``names`` gives, else the id."""
    name = names.get(number)
    if name is None:
        return number
    try:
        return lookup(name)
    except KeyError:
        return number


def host_gid(fs_group: int | None) -> int:
    """This host's gid for a pod's fsGroup (or runAsGroup): the host's gid of the group the
    image pins that gid to, else the gid itself (0 without fsGroup)."""
    if fs_group is None:
        return 0
    return _host_id(fs_group, _GROUP_NAMES, lambda name: grp.getgrnam(name).gr_gid)


def host_uid(uid: int) -> int:
    """This host's uid for a container's runAsUser: the host's uid of the user the image pins
    that uid to, else the uid itself."""
    return _host_id(uid, _USER_NAMES, lambda name: pwd.getpwnam(name).pw_uid)


def primary_gid(uid: int) -> int:
    """The group of this host's user ``uid`` (0 for a uid without an account)."""
    try:
        return pwd.getpwuid(uid).pw_gid
    except KeyError:
        return 0


def host_ids() -> HostIds:
    """This host's ids for the image's, for ``local.security.setpriv_command``."""
    return HostIds(host_uid, host_gid, primary_gid)


def source_files(obj: dict[str, Any], items: list[dict[str, Any]] | None) -> dict[str, bytes]:
    """The files a ConfigMap/Secret volume shows: all keys, or the projected ``items``."""
    if obj["kind"] == "Secret":
        data = {k: base64.b64decode(v) for k, v in obj.get("data", {}).items()}
    else:
        data = {k: v.encode() for k, v in obj.get("data", {}).items()}
    if items is None:
        return data
    return {item["path"]: data[item["key"]] for item in items if item["key"] in data}


def write_projected(folder: Path, files: dict[str, bytes], mode: int, gid: int) -> bool:
    """Atomically replace the folder's content (kubelet ``..data`` swap); False if unchanged."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chown(folder, 0, gid)
    os.chmod(folder, 0o755)
    current = folder / "..data"
    if current.exists():
        old = {p.name: p.read_bytes() for p in current.iterdir() if p.is_file()}
        if old == files:
            return False
    stamp = folder / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns()}"
    stamp.mkdir()
    for name, data in files.items():
        path = stamp / name
        path.write_bytes(data)
        os.chown(path, 0, gid)
        os.chmod(path, mode)
    os.chmod(stamp, 0o755)
    link = folder / "..data_tmp"
    if link.is_symlink():
        link.unlink()
    link.symlink_to(stamp.name)
    os.replace(link, current)
    for name in files:
        visible = folder / name
        if not visible.is_symlink():
            if visible.exists():
                visible.unlink()
            visible.symlink_to(f"..data/{name}")
    for entry in folder.iterdir():
        if entry.name.startswith(".."):
            if entry.is_dir() and not entry.is_symlink() and entry != stamp:
                shutil.rmtree(entry)
        elif entry.name not in files:
            entry.unlink()
    return True


def prepare_claim(path: Path, fs_group: int | None) -> None:
    """A PVC's folder, with the fsGroup treatment (OnRootMismatch: only the root is fixed up)."""
    path.mkdir(parents=True, exist_ok=True)
    gid = host_gid(fs_group)
    if fs_group is not None and (
        path.stat().st_gid != gid or path.stat().st_mode & 0o2070 != 0o2070
    ):
        os.chown(path, path.stat().st_uid, gid)
        os.chmod(path, 0o2775)


def fresh_empty_dir(path: Path) -> None:
    """An emptyDir, empty as for a new pod: world-writable with the sticky bit, as /tmp."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    os.chmod(path, 0o777 | 0o1000)
