"""Lint of images/Dockerfile.*: they cannot be built here (no Docker), so read them.

Checked: every base image is pinned (a version tag or a digest, never ``latest``), the operator
runs as the non-root uid the Helm chart expects, the mail image installs exactly the daemon
packages the tests run (scripts/setup.sh) and creates the fixed groups of render/layout.py
before installing them, and both images install this package.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from mailstack import MAIL_IMAGE_VERSION
from mailstack.render import layout

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"
DAEMON_PACKAGE = re.compile(r"^(postfix|dovecot-[a-z]+|rspamd)$")

Instruction = tuple[str, str]


def instructions(path: Path) -> list[Instruction]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    result: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    assert not pending, f"{path.name}: dangling line continuation"
    return result


def base_images(steps: list[Instruction]) -> list[str]:
    args: dict[str, str] = {}
    images = []
    for keyword, rest in steps:
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name] = value
        elif keyword == "FROM":
            ref = rest.split()[0]
            images.append(re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], ref))
    return images


def installed_packages(steps: list[Instruction]) -> list[str]:
    packages = []
    for keyword, rest in steps:
        if keyword != "RUN" or "apt-get install" not in rest:
            continue
        words = shlex.split(rest.split("apt-get install", 1)[1].split("&&")[0])
        packages += [w for w in words if not w.startswith("-")]
    return packages


def setup_packages() -> list[str]:
    text = (ROOT / "scripts" / "setup.sh").read_text()
    match = re.search(r"DEBIAN_PACKAGES=\(([^)]*)\)", text)
    assert match, "scripts/setup.sh: DEBIAN_PACKAGES not found"
    body = re.sub(r"#.*", "", match.group(1))
    return body.split()


@pytest.mark.parametrize("name", ["Dockerfile.operator", "Dockerfile.mail"])
def test_base_images_are_debian_12_and_pinned(name: str) -> None:
    images = base_images(instructions(IMAGES / name))
    assert images
    for image in images:
        repository, _, tag = image.partition("@")[0].rpartition(":")
        assert repository and tag, f"{image}: no tag"
        assert tag != "latest" and "latest" not in image
        assert re.search(r"\d+\.\d+", tag), f"{image}: the tag is not a version"
        assert "bookworm" in tag or tag.startswith("12."), f"{image}: not Debian 12"


def test_operator_image_runs_as_the_charts_non_root_user() -> None:
    steps = instructions(IMAGES / "Dockerfile.operator")
    users = [rest for keyword, rest in steps if keyword == "USER"]
    assert users, "no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0
    values = yaml.safe_load((ROOT / "charts" / "mailstack" / "values.yaml").read_text())
    assert int(uid) == values["podSecurityContext"]["runAsUser"]
    assert int(gid) == values["podSecurityContext"]["runAsGroup"]
    last_from = max(i for i, (k, _) in enumerate(steps) if k == "FROM")
    assert any(k == "USER" for k, _ in steps[last_from:]), "USER must be set in the final stage"
    entry = [rest for keyword, rest in steps if keyword == "ENTRYPOINT"]
    assert entry == ['["mailstack"]']


def test_mail_image_installs_the_daemon_packages_of_the_tests() -> None:
    steps = instructions(IMAGES / "Dockerfile.mail")
    image = {p for p in installed_packages(steps) if DAEMON_PACKAGE.match(p)}
    tested = {p for p in setup_packages() if DAEMON_PACKAGE.match(p)}
    assert tested, "no daemon packages in scripts/setup.sh"
    assert image == tested


def test_mail_image_creates_the_fixed_groups_before_the_packages() -> None:
    steps = instructions(IMAGES / "Dockerfile.mail")
    install = next(i for i, (k, r) in enumerate(steps) if k == "RUN" and "apt-get install" in r)
    before = " ".join(rest for keyword, rest in steps[:install] if keyword == "RUN")
    for group, gid in (("dovecot", layout.DOVECOT_GID), ("_rspamd", layout.RSPAMD_GID)):
        assert re.search(rf"groupadd (--system )?--gid {gid} {group}\b", before), group
        assert re.search(rf"useradd [^&]*--gid {group} [^&]*\b{group}\b", before), group
    # Package scripts must not start daemons during the build; Postfix is configured by us.
    assert "policy-rc.d" in before and "exit 101" in before
    assert "main_mailer_type select No configuration" in steps[install][1]


@pytest.mark.parametrize("name", ["Dockerfile.operator", "Dockerfile.mail"])
def test_images_install_this_package_and_run_it(name: str) -> None:
    steps = instructions(IMAGES / name)
    copies = [rest for keyword, rest in steps if keyword == "COPY"]
    assert any(c.startswith("operator ") for c in copies)
    assert any(
        "pip install" in rest and "/src" in rest for keyword, rest in steps if keyword == "RUN"
    )
    entry = [rest for keyword, rest in steps if keyword == "ENTRYPOINT"][-1]
    assert entry.startswith('["mailstack"')
    assert not any(keyword == "ADD" for keyword, _ in steps)  # no remote downloads
    apt = [rest for keyword, rest in steps if keyword == "RUN" and "apt-get install" in rest]
    assert all("rm -rf /var/lib/apt/lists/*" in rest for rest in apt)


def test_mail_image_installs_the_agent_without_the_operators_dependencies() -> None:
    steps = instructions(IMAGES / "Dockerfile.mail")
    (install,) = [rest for kw, rest in steps if kw == "RUN" and "pip install" in rest]
    assert "--no-deps" in install.split()
    operator_steps = instructions(IMAGES / "Dockerfile.operator")
    (operator_install,) = [r for kw, r in operator_steps if kw == "RUN" and "pip install" in r]
    assert "--no-deps" not in operator_install.split()


def test_the_agent_runs_on_the_standard_library_alone() -> None:
    # What the mail image holds: this package and no dependency. Python without site-packages
    # (-S), the package's folder first on the path: every module of the agent imports and
    # `mailstack agent --help` answers.
    script = textwrap.dedent(
        """
        import importlib, pkgutil, sys
        sys.path.insert(0, sys.argv[1])
        import mailstack.agent
        for module in pkgutil.iter_modules(mailstack.agent.__path__, "mailstack.agent."):
            importlib.import_module(module.name)
        from mailstack.entry import main
        sys.argv[0] = "mailstack"
        main(["agent", "--help"])
        """
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", script, str(ROOT / "operator")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout and "postfix" in done.stdout


# What runs in a mail pod: the agent and the files it imports, and the image's own recipe. When
# any of them changes, the mail image is a new one and needs a new MAIL_IMAGE_VERSION: nodes
# with imagePullPolicy IfNotPresent would otherwise keep running the old image under the old tag.
MAIL_IMAGE_INPUTS = (
    "images/Dockerfile.mail",
    "operator/mailstack/__main__.py",
    "operator/mailstack/entry.py",
    "operator/mailstack/agent/*.py",
    "operator/mailstack/render/__init__.py",
    "operator/mailstack/render/layout.py",
)
MAIL_IMAGE_VERSIONS = IMAGES / "mail-image-versions.txt"


def mail_image_digest() -> str:
    digest = hashlib.sha256()
    for pattern in MAIL_IMAGE_INPUTS:
        for path in sorted(ROOT.glob(pattern)):
            digest.update(f"{path.relative_to(ROOT)}\0".encode())
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def test_the_mail_image_version_names_what_runs_in_the_mail_pods() -> None:
    recorded = dict(
        line.split()[:2]
        for line in MAIL_IMAGE_VERSIONS.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    current = mail_image_digest()
    hint = (
        f"what runs in the mail pods changed: raise MAIL_IMAGE_VERSION (mailstack/__init__.py) "
        f"and the chart's mailstack.dev/mail-image-version, then add the line "
        f"'<new version> {current}' to {MAIL_IMAGE_VERSIONS.relative_to(ROOT)}"
    )
    assert recorded.get(MAIL_IMAGE_VERSION) == current, hint
    assert len(set(recorded.values())) == len(recorded), "two versions for one image"
    chart = yaml.safe_load((ROOT / "charts" / "mailstack" / "Chart.yaml").read_text())
    assert chart["annotations"]["mailstack.dev/mail-image-version"] == MAIL_IMAGE_VERSION
