"""Image size benchmark: what the operator image and the mail image install, without Docker.

    .venv/bin/python bench/images.py [--write]

No Docker engine runs here, so the images are not built; their two layers that we choose are
measured instead, as the Dockerfiles install them:
1. the Python virtualenv of each image (``images/Dockerfile.*``'s ``pip install`` line, with or
   without ``--no-deps`` as written there), created afresh and measured on disk;
2. the Debian packages of the mail image's ``apt-get install`` line with everything they depend
   on (``Depends``/``Pre-Depends``, no recommends, as ``--no-install-recommends``), by the
   ``Installed-Size`` the packages declare, leaving out the packages of priority ``required``
   (what a Debian slim base image already holds).
The base images themselves (python:3.11-slim, debian:12-slim) are the same for every version
of mailstack and are not counted. With ``--write`` the figures replace the "Images" section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Run as ``python bench/NAME.py``, Python puts bench/ first on the path: replace it with the
# repository, so ``bench`` and ``tests`` import and nothing in bench/ shadows a standard module.
if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.mailpath import write_section

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "images"
_BUILD_LEFTOVERS = shutil.ignore_patterns("*.egg-info", "__pycache__")


def dockerfile_runs(name: str) -> list[str]:
    """The RUN instructions of an image's Dockerfile, continuation lines joined."""
    runs: list[str] = []
    pending = ""
    for raw in (IMAGES / name).read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("RUN "):
            runs.append(line[4:])
    return runs


def pip_options(name: str) -> list[str]:
    """The options of the Dockerfile's ``pip install`` of this package (e.g. ``--no-deps``)."""
    for run in dockerfile_runs(name):
        for part in run.split("&&"):
            words = part.split()
            if words and words[0].endswith("/pip") and "install" in words:
                return [w for w in words if w.startswith("--") and w != "--no-cache-dir"]
    raise SystemExit(f"{name}: no pip install found")


def apt_packages(name: str) -> list[str]:
    for run in dockerfile_runs(name):
        found = re.search(r"apt-get install (.*?)(?:&&|$)", run)
        if found:
            return [w for w in found[1].split() if not w.startswith("-")]
    return []


def venv_size(options: list[str]) -> tuple[int, list[str]]:
    """Bytes on disk of a fresh virtualenv with this package installed with ``options``."""
    with tempfile.TemporaryDirectory(prefix="bench-images-") as tmp:
        venv, source = Path(tmp) / "venv", Path(tmp) / "src"
        # What the Dockerfiles copy (COPY pyproject.toml README.md; COPY operator), so the
        # build's files land in the copy, not in the repository.
        shutil.copytree(ROOT / "operator", source / "operator", ignore=_BUILD_LEFTOVERS)
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, source / name)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "pip"), "install", "-q", "--no-cache-dir"]
        subprocess.run([*pip, *options, str(source)], check=True, capture_output=True)
        listed = subprocess.run(
            [str(venv / "bin" / "pip"), "list", "--format=freeze"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        size = 0
        for folder, _, files in os.walk(venv):
            for file in files:
                path = Path(folder) / file
                if not path.is_symlink():
                    size += path.stat().st_size
        return size, [p.split("==")[0] for p in listed if p.split("==")[0] not in ("pip",)]


def package_closure(packages: list[str]) -> dict[str, int]:
    """Every package the list pulls in (no recommends) → its Installed-Size in KiB."""
    listed = subprocess.run(
        [
            *("apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests"),
            *("--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", *packages),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    names = {ln for ln in listed.splitlines() if ln and not ln.startswith(" ") and "<" not in ln}
    shown = subprocess.run(
        ["apt-cache", "show", "--no-all-versions", *sorted(names)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    sizes: dict[str, int] = {}
    for stanza in shown.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " "
        )
        if "Package" in fields and fields.get("Priority") != "required":
            sizes[fields["Package"]] = int(fields.get("Installed-Size", "0"))
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()

    rows = []
    for image, dockerfile in (("operator", "Dockerfile.operator"), ("mail", "Dockerfile.mail")):
        options = pip_options(dockerfile)
        size, installed = venv_size(options)
        rows.append((image, " ".join(options) or "(with dependencies)", size, installed))
        print(f"{image}: venv {size / 2**20:.1f} MiB, {len(installed)} packages", flush=True)
    debian = package_closure(apt_packages("Dockerfile.mail"))
    debian_mib = sum(debian.values()) / 1024
    print(f"mail: Debian packages {debian_mib:.0f} MiB ({len(debian)} packages)")

    lines = [
        "Measured by `bench/images.py` (no Docker here: the layers mailstack adds to its base",
        "images, measured as the Dockerfiles install them; the base images are not counted).",
        "",
        "| image | Python virtualenv | pip options | Python packages in it |",
        "|---|---|---|---|",
    ]
    for image, options, size, installed in rows:
        names = ", ".join(sorted(installed)) if len(installed) <= 6 else f"{len(installed)}"
        lines.append(f"| {image} | {size / 2**20:.1f} MiB | {options} | {names} |")
    lines += [
        "",
        "The mail image's Debian packages (Postfix, Dovecot, rspamd, Python and what they",
        f"depend on, without recommends, priority `required` left out): {debian_mib:.0f} MiB",
        f"installed, {len(debian)} packages. Its Python layer holds only this package: the",
        "agent needs the standard library alone (tests/unit/test_images.py), so kopf,",
        "kubernetes, jinja2, cryptography and the rest stay in the operator's image (until",
        "2026-12 the mail image installed them too: its virtualenv was the operator's size).",
        "Most of the mail image's virtualenv is pip and setuptools, which every venv holds.",
        "",
        "Reproduce: `.venv/bin/python bench/images.py --write`.",
    ]
    report = "\n".join(lines)
    print(report)
    if args.write:
        write_section(ROOT / "docs" / "benchmarks.md", "Images", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
