"""The PROXY listeners refuse clients announced with an address no client can have: the pod's
loopback (which rspamd and mynetworks take for the pod itself), "this network", link-local
(the #14 re-check R1)."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import time
from pathlib import Path

from mailstack.render.postfix import UNANNOUNCEABLE_CLIENTS
from tests.unit.test_render_proxy import find, proxied_render, render

POSTCONF = shutil.which("postconf") or "/usr/sbin/postconf"


def postfix_config(objects: list[dict[str, object]], folder: Path, name: str) -> Path:
    folder.mkdir()
    data = find(objects, "ConfigMap", name)["data"]
    assert isinstance(data, dict)
    for key, text in data.items():
        (folder / key).write_text(text)
    old = time.time() - 10  # Postfix ignores a main.cf younger than ~2 s
    for path in folder.iterdir():
        os.utime(path, (old, old))
    return folder


def postconf(config: Path, *args: str) -> str:
    run = subprocess.run([POSTCONF, "-c", str(config), *args], capture_output=True, text=True)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    return run.stdout


def test_the_unannounceable_ranges_hold_every_loopback_form() -> None:
    networks = [ipaddress.ip_network(n) for n in UNANNOUNCEABLE_CLIENTS]
    for address in ("127.0.0.1", "127.0.0.5", "::1", "::ffff:127.0.0.1", "169.254.169.254"):
        assert any(ipaddress.ip_address(address) in n for n in networks), address
    for address in ("10.100.114.2", "203.0.113.9", "2001:db8::99", "::ffff:203.0.113.9"):
        assert not any(ipaddress.ip_address(address) in n for n in networks), address


def test_the_proxy_listeners_refuse_unannounceable_clients(tmp_path: Path) -> None:
    config = postfix_config(proxied_render(tmp_path), tmp_path / "postfix", "px-postfix")
    services = {
        f"{words[0]}/{words[1]}": words
        for words in (line.split() for line in postconf(config, "-M").splitlines())
    }
    guard = "mailstack_proxied_guard=$mailstack_unannounceable_smtpd"
    for service in ("25/inet", "smtpd/pass"):
        if service == "25/inet":
            assert (
                "postscreen_access_list=$mailstack_unannounceable_postscreen" in services[service]
            )
            assert "postscreen_denylist_action=drop" in services[service]
        else:
            assert guard in services[service], service
    for service in ("10587/inet", "10588/inet", "127.0.0.1:10025/inet"):
        assert not any("mailstack_proxied_guard" in word for word in services[service]), service
    # 587 and 465 are Dovecot's: mda-relay refuses the same addresses when Dovecot names them
    # with XCLIENT, PROXY exposure or not (test_render_submission).
    assert not {"587/inet", "465/inet", "11587/inet", "11465/inet"} & set(services)
    assert any("$mailstack_unannounceable_smtpd," in word for word in services["10588/inet"])
    # Every public smtpd checks the guard first ($mailstack_tripwire leads their restrictions).
    assert postconf(config, "-h", "mailstack_tripwire").split(",")[0].strip() == (
        "$mailstack_proxied_guard"
    )
    smtpd = postconf(config, "-h", "mailstack_unannounceable_smtpd")
    postscreen = postconf(config, "-h", "mailstack_unannounceable_postscreen")
    for network in UNANNOUNCEABLE_CLIENTS:
        assert f"{{{network} REJECT 5.7.1 " in smtpd
        assert f"{{{network} reject}}" in postscreen


def test_without_proxy_the_guard_is_empty(tmp_path: Path) -> None:
    objects = render(tmp_path, {"type": "LoadBalancer"})
    config = postfix_config(objects, tmp_path / "postfix", "px-postfix")
    assert postconf(config, "-h", "mailstack_proxied_guard").strip() == ""
    assert "mailstack_proxied_guard" not in postconf(config, "-M")
