"""The init of one local container, run inside fresh mount and PID namespaces.

``python -m mailstack.local.container SPEC.json``: mount /proc and a private /run, lay a private
layer over /etc, bind the pod's volumes at their mountPaths (read-only where the pod spec says
so), bind the pod's hosts and resolv.conf, then fork the container's command and act as PID 1:
forward SIGTERM/SIGINT, reap every orphan, and exit with the command's status.

Why the layer over /etc: a bind mount onto the host's own ``/etc/hosts`` is detached in every
other mount namespace as soon as a host tool replaces that file (a new inode, Linux >= 3.18);
the pod then silently saw the host's file, lost its Service names and bounced mail. In an
overlay whose lower layer is the host's /etc, the mount points are the overlay's, which no host
tool can remove; the pod's files stay in place whatever happens to the host's.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def _bind(source: str, target: str, read_only: bool) -> None:
    src = Path(source)
    dst = Path(target)
    if src.is_dir():
        dst.mkdir(parents=True, exist_ok=True)
    elif not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.touch()
    _mount("--bind", source, target)
    if read_only:
        _mount("-o", "remount,bind,ro", target)


def overlay_options(lower: str, layer: str) -> str:
    """The overlay mount options over the host's ``lower`` folder, with the private upper and
    work folders under ``layer``; refuses a path the option syntax cannot carry."""
    if any(c in lower for c in ",:\\") or not lower.startswith("/"):
        raise ValueError(f"{lower!r}: the host's /etc must be an absolute path without , : \\")
    return f"lowerdir={lower},upperdir={layer}/upper,workdir={layer}/work"


def _private_etc(host_etc: str) -> None:
    """/etc as the host's, under a layer of this container's own (on its /run tmpfs): what the
    container writes or mounts there never reaches or depends on the host's files."""
    layer = Path("/run/.mailstack-etc")
    for folder in (layer / "upper", layer / "work"):
        folder.mkdir(parents=True)
    _mount("-t", "overlay", "overlay", "-o", overlay_options(host_etc, str(layer)), "/etc")


def setup_mounts(spec: dict[str, Any]) -> None:
    """Give this mount namespace the container's view of the files: /proc, a private /run, a
    private layer over /etc, the pod's volumes at their mountPaths, /etc/hosts and
    /etc/resolv.conf, and the "image" paths (``keep``) wherever a volume would hide them."""
    _mount("--make-rprivate", "/")
    _mount("-t", "proc", "proc", "/proc")
    _mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run")
    _private_etc(spec.get("etc") or "/etc")
    # Stage every source first: a volume mounted on, say, /tmp must not hide the sources of the
    # mounts that follow it.
    staging = Path("/run/.mailstack-sources")
    staging.mkdir()
    mounts = sorted(spec["mounts"], key=lambda m: m["target"].count("/"))
    extra = [
        (spec[k], t, True)
        for k, t in (("hosts", "/etc/hosts"), ("resolv", "/etc/resolv.conf"))
        if spec.get(k)
    ]
    planned = [(m["source"], m["target"], m["readOnly"]) for m in mounts] + extra
    # The "image" is this host: the interpreter and the package must stay visible even where a
    # volume covers their folder (a checkout under /tmp, which the pods mount an emptyDir on).
    covered = [target for _, target, _ in planned] + ["/etc/mailstack"]
    keep = [
        path
        for path in sorted(set(spec.get("keep", [])), key=lambda p: p.count("/"))
        if Path(path).is_dir() and any(path == t or path.startswith(t + "/") for t in covered)
    ]
    planned += [(path, path, True) for path in keep]
    staged: list[tuple[str, str, bool]] = []
    for index, (source, target, read_only) in enumerate(planned):
        place = staging / str(index)
        if Path(source).is_dir():
            place.mkdir()
        else:
            place.touch()
        _mount("--bind", source, str(place))
        staged.append((str(place), target, read_only))
    # /etc/mailstack is a mount point only (made in the private layer): a tmpfs lets the
    # sub-folders exist.
    Path("/etc/mailstack").mkdir(exist_ok=True)
    _mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/etc/mailstack")
    for source, target, read_only in staged:
        _bind(source, target, read_only)
    for source, _, _ in staged:
        _mount_umount(source)
    staging.rmdir()


def _mount_umount(path: str) -> None:
    subprocess.run(["umount", "-l", path], check=True)
    target = Path(path)
    if target.is_dir():
        target.rmdir()
    else:
        target.unlink()


def run(spec: dict[str, Any]) -> int:
    """Mount, then run the container's command as PID 1 would: forward signals, reap orphans.

    The command's exit status, 128 + the signal's number when a signal ended it.
    """
    setup_mounts(spec)
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}
    env.update(spec.get("env", {}))
    child = subprocess.Popen(spec["command"], env=env, cwd=spec.get("workingDir") or "/")

    def forward(signum: int, frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    status = 0
    while True:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid == child.pid:
            status = os.waitstatus_to_exitcode(wait_status)
            child.returncode = status
            break
    # Whatever is left in the namespace dies with PID 1.
    return status if status >= 0 else 128 - status


def main() -> int:
    """``python -m mailstack.local.container SPEC.json``: run the container the spec describes."""
    spec = json.loads(Path(sys.argv[1]).read_text())
    return run(spec)


if __name__ == "__main__":
    raise SystemExit(main())
