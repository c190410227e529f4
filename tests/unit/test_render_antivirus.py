"""spec.spam.antivirus: the clamd and freshclam containers of the MTA pod and their settings.

The scanning itself (EICAR in a zip refused, clean mail passing, clamd down) is in
tests/mail/test_antivirus.py with the real daemons.
"""

from __future__ import annotations

from typing import Any

import pytest

from mailstack.api import hosts
from mailstack.api.assemble import MailService, assemble
from mailstack.api.errors import ValidationError
from mailstack.api.models import API_VERSION
from mailstack.api.parse import parse_maildomain
from mailstack.render import layout
from mailstack.render.objects import RenderOptions
from mailstack.render.rspamd import render_rspamd_config
from mailstack.render.workloads import render_mta_statefulset

Doc = dict[str, Any]
URL = "https://signatures.example.net/own.ndb"


def service(antivirus: Doc | None) -> MailService:
    spam = {} if antivirus is None else {"antivirus": antivirus}
    doc = {
        "apiVersion": API_VERSION,
        "kind": "MailDomain",
        "metadata": {"name": "example-com", "namespace": "mail"},
        "spec": {"domain": "example.com", "spam": spam},
    }
    (result,), problems = assemble([parse_maildomain(doc)], [])
    assert not problems
    return result


def mta_pod(antivirus: Doc | None) -> Doc:
    statefulset = render_mta_statefulset(service(antivirus), RenderOptions(), "sum", False)
    pod: Doc = statefulset["spec"]["template"]["spec"]
    return pod


def test_off_by_default_nothing_of_clamav_is_rendered() -> None:
    pod = mta_pod(None)
    assert [c["name"] for c in pod["containers"]] == ["postfix", "rspamd"]
    files = render_rspamd_config(service(None))
    assert not {"antivirus.conf", "clamd.conf", "freshclam.conf"} & set(files)
    assert "CLAM_VIRUS" not in files["force_actions.conf"]


def test_on_clamd_and_freshclam_run_as_clamav_without_capabilities() -> None:
    pod = mta_pod({"enabled": True})
    containers = {c["name"]: c for c in pod["containers"]}
    assert list(containers) == ["postfix", "rspamd", "clamd", "freshclam"]
    for name in ("clamd", "freshclam"):
        context = containers[name]["securityContext"]
        assert context["runAsUser"] == layout.CLAMAV_UID
        assert context["runAsGroup"] == layout.CLAMAV_GID
        assert context["capabilities"] == {"drop": ["ALL"]}
        mounts = {m["mountPath"]: m for m in containers[name]["volumeMounts"]}
        assert mounts[layout.CLAMAV_DB_DIR]["subPath"] == "clamav-db"
        assert mounts[layout.CLAMAV_CONFIG_DIR]["readOnly"] is True
        assert containers[name]["args"] == [
            "agent",
            name,
            "--health-port",
            str(layout.HEALTH_PORTS[name]),
        ]
    # The first download and load take minutes: 15 of them before the kubelet gives up.
    startup = containers["clamd"]["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] == 900
    assert containers["clamd"]["resources"]["limits"]["memory"] == "3Gi"
    volume = next(v for v in pod["volumes"] if v["name"] == "clamav-config")
    assert volume["configMap"]["name"] == "example-com-rspamd"
    assert [i["key"] for i in volume["configMap"]["items"]] == ["clamd.conf", "freshclam.conf"]


def test_rspamd_scans_attachments_with_clamd_on_the_pods_loopback() -> None:
    files = render_rspamd_config(service({"enabled": True}))
    assert f'servers = "127.0.0.1:{layout.CLAMD_PORT}";' in files["antivirus.conf"]
    assert "scan_mime_parts = true;" in files["antivirus.conf"]
    assert f"TCPSocket {layout.CLAMD_PORT}\n" in files["clamd.conf"]
    assert "TCPAddr 127.0.0.1\n" in files["clamd.conf"]
    assert "ScanArchive yes\n" in files["clamd.conf"]
    assert f"DatabaseDirectory {layout.CLAMAV_DB_DIR}\n" in files["clamd.conf"]
    assert "StreamMaxLength 26214400\n" in files["clamd.conf"]  # the default message size
    force = files["force_actions.conf"]
    assert 'action = "soft reject";\n    expression = "CLAM_VIRUS_FAIL";' in force
    assert force.count('message = "A virus was found in the message";') == 2


def test_quarantine_marks_incoming_mail_and_still_refuses_users_mail() -> None:
    force = render_rspamd_config(service({"enabled": True, "action": "quarantine"}))[
        "force_actions.conf"
    ]
    incoming = force.split("MAILSTACK_VIRUS {", 1)[1].split("}", 1)[0]
    assert 'action = "add header";' in incoming
    own = force.split("MAILSTACK_VIRUS_OWN {", 1)[1].split("}", 1)[0]
    assert 'action = "reject";' in own


def test_freshclam_takes_the_official_databases_from_a_mirror_or_not_at_all() -> None:
    official = render_rspamd_config(service({"enabled": True}))["freshclam.conf"]
    assert "DatabaseMirror database.clamav.net.\n" in official
    assert "ExcludeDatabase" not in official
    mirrored = render_rspamd_config(
        service({"enabled": True, "signatures": {"privateMirror": "http://mirror.example.net"}})
    )["freshclam.conf"]
    assert "PrivateMirror http://mirror.example.net.\n" in mirrored
    assert "DatabaseMirror" not in mirrored
    own = render_rspamd_config(
        service({"enabled": True, "signatures": {"official": False, "urls": [URL]}})
    )["freshclam.conf"]
    for database in ("main", "daily", "bytecode"):
        assert f"ExcludeDatabase {database}\n" in own
    assert f"DatabaseCustomURL {hosts.absolute_url(URL)}\n" in own


def test_freshclams_hosts_are_absolute_names_which_no_search_list_completes() -> None:
    # The MTA pod resolves with the cluster's search list (dnsPolicy ClusterFirst, ndots:5):
    # kubernetes.default would be the API server, shop.tenant-b another tenant's Service.
    # freshclam hands the host to libcurl as written, and a name with a trailing dot is
    # resolved as it stands.
    urls = ["http://kubernetes.default/x.ndb", "https://shop.tenant-b:8443/y.ndb?v=1", ADDRESS_URL]
    own = render_rspamd_config(
        service({"enabled": True, "signatures": {"official": False, "urls": urls}})
    )["freshclam.conf"]
    assert "DatabaseCustomURL http://kubernetes.default./x.ndb\n" in own
    assert "DatabaseCustomURL https://shop.tenant-b.:8443/y.ndb?v=1\n" in own
    assert f"DatabaseCustomURL {ADDRESS_URL}\n" in own  # an address stays as it is
    mirrored = render_rspamd_config(
        service({"enabled": True, "signatures": {"privateMirror": "http://mirror.tenant-b"}})
    )["freshclam.conf"]
    assert "PrivateMirror http://mirror.tenant-b.\n" in mirrored


ADDRESS_URL = "http://[2001:db8::1]:8080/z.ndb"


def test_the_default_mirror_is_absolute_too() -> None:
    # #13 re-check F8: with ndots:5 the search list completes database.clamav.net FIRST: the
    # tenant holding the namespace ``net`` answers database.clamav.net.svc.cluster.local (a
    # headless Service ``clamav``, a pod ``database``) for every tenant's freshclam. freshclam
    # makes ``https://database.clamav.net.`` of it; its TXT look-ups (current.cvd.clamav.net)
    # go through res_query, which uses no search list.
    config = render_rspamd_config(service({"enabled": True}))["freshclam.conf"]
    mirrors = [
        line.split()[1] for line in config.splitlines() if line.startswith("DatabaseMirror ")
    ]
    assert mirrors == ["database.clamav.net."]


@pytest.mark.parametrize(
    ("signatures", "message"),
    [
        ({"official": False}, "without the official databases, list the urls of others"),
        (
            {"official": False, "privateMirror": "http://m.example.net", "urls": [URL]},
            "mirrors the official databases: unused",
        ),
        ({"urls": ["http://x.example.net/a b.ndb"]}, "is not an http(s) URL"),
        ({"urls": ["http://x.example.net/a.ndb\nPrivateMirror evil"]}, "is not an http(s) URL"),
    ],
)
def test_signature_settings_are_checked(signatures: Doc, message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        service({"enabled": True, "signatures": signatures})
    assert message in str(raised.value), str(raised.value)
