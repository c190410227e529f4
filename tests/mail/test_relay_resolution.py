"""Postfix resolves the relay's name as written, without the search domains of the pod's resolver.

In a cluster the MTA pod's resolv.conf carries ``search <ns>.svc.cluster.local svc.cluster.local
cluster.local`` with ``ndots:5``: a resolver applying it would turn a tenant's
``relay.host: smtp.tenant-b`` into ``smtp.tenant-b.svc.cluster.local``, another namespace's
Service. Here a real Postfix, with the relay lookup settings the render produces, sends one
message through ``[relay.tenant-b]:2525`` in fresh mount, network and PID namespaces whose
resolv.conf has such a search list and whose DNS server logs every question; ``native`` lookups
(getaddrinfo) are the control, showing the search list is in force.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstack.api.models import Relay
from mailstack.render.postfix import render_postfix_config
from tests.unit.test_render_relay import service

DNS_SERVER = """
import socket, sys
import dns.flags, dns.message, dns.rcode, dns.rdatatype, dns.rrset
log = open(sys.argv[1], "a", buffering=1)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 53))
open(sys.argv[2], "w").close()  # ready
while True:
    wire, peer = sock.recvfrom(4096)
    query = dns.message.from_wire(wire)
    answer = dns.message.make_response(query)
    name, rtype = query.question[0].name.to_text(), query.question[0].rdtype
    log.write(f"{name} {dns.rdatatype.to_text(rtype)}\\n")
    if name.endswith(".cluster.test.") and rtype == dns.rdatatype.A:
        answer.answer.append(dns.rrset.from_text(name, 60, "IN", "A", "127.0.0.1"))
    elif not name.endswith(".cluster.test."):
        answer.set_rcode(dns.rcode.NXDOMAIN)
    answer.flags |= dns.flags.AA
    sock.sendto(answer.to_wire(), peer)
"""

SCRIPT = """
set -u
cd "$ROOT"
ip link set lo up
mount --bind "$ROOT/resolv.conf" /etc/resolv.conf
"$PYTHON" dnsd.py "$ROOT/queries.log" "$ROOT/dns-ready" &
smtp-sink -u postfix 127.0.0.1:2525 100 &
for i in $(seq 100); do [ -e dns-ready ] && break; sleep 0.1; done
for lookup in $LOOKUPS; do
  conf="$ROOT/$lookup"
  mkdir -p "$conf/queue" "$conf/data"
  chown postfix "$conf/data"
  sed -E 's/^([a-z]+ +[a-z-]+ +[-ny] +[-ny] +)[-y]( )/\\1n\\2/' /etc/postfix/master.cf \\
    | grep -v '^postlog' > "$conf/master.cf"
  echo "postlog unix-dgram n - n - 1 postlogd" >> "$conf/master.cf"
  cat > "$conf/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $conf/queue
data_directory = $conf/data
myhostname = mta.example.org
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
relayhost = [relay.tenant-b]:2525
smtp_tls_security_level = none
smtp_host_lookup = $lookup
smtp_dns_resolver_options = $RESOLVER_OPTIONS
maillog_file_prefixes = $ROOT
maillog_file = $conf/maillog
CF
  touch -d '-1 min' "$conf/main.cf" "$conf/master.cf"
  echo "== $lookup" >> queries.log
  postfix -c "$conf" post-install create-missing >/dev/null 2>&1
  postfix -c "$conf" start >/dev/null 2>&1
  printf 'Subject: t\\n\\nhello\\n' | sendmail -C "$conf" -f a@example.org b@example.net
  for i in $(seq 100); do grep -q "status=" "$conf/maillog" 2>/dev/null && break; sleep 0.1; done
  postfix -c "$conf" stop >/dev/null 2>&1 || true
done
"""


def rendered_lookup(tmp_path: Path) -> dict[str, str]:
    """The relay lookup parameters' effective values in the main.cf rendered for a relay."""
    relay = service(Relay(host="relay.tenant-b", port=2525))
    files = render_postfix_config(relay, None, "AB:CD")  # the MDA fingerprint: not looked at
    conf = tmp_path / "rendered"
    conf.mkdir()
    for name, text in files.items():
        (conf / name).write_text(text)
        os.utime(conf / name, (time.time() - 10,) * 2)
    result = subprocess.run(
        ["postconf", "-c", str(conf), "smtp_host_lookup", "smtp_dns_resolver_options"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return dict(line.split(" = ", 1) for line in result.stdout.splitlines() if " = " in line)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A folder Postfix's own users can reach (pytest's tmp_path sits under a 0700 folder)."""
    path = Path(tempfile.mkdtemp(prefix="mailstack-relay-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_postfix_asks_for_the_relay_as_written(workdir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network and mount namespaces)")
    for tool in ("postfix", "smtp-sink", "unshare", "ip"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            pytest.fail(f"{tool} is not installed")
    settings = rendered_lookup(workdir)
    lookup = settings["smtp_host_lookup"]
    assert lookup == "dns"
    (workdir / "dnsd.py").write_text(DNS_SERVER)
    (workdir / "resolv.conf").write_text(
        "nameserver 127.0.0.1\n"
        "search tenant-a.svc.cluster.test svc.cluster.test cluster.test\n"
        "options ndots:5\n"
    )
    env = {
        **os.environ,
        "ROOT": str(workdir),
        "PYTHON": sys.executable,
        "LOOKUPS": f"{lookup} native",
        "RESOLVER_OPTIONS": settings.get("smtp_dns_resolver_options", ""),
    }
    # A PID namespace: every process started inside ends with the script.
    subprocess.run(
        ["unshare", "--mount", "--net", "--pid", "--fork", "--mount-proc", "bash", "-c", SCRIPT],
        env=env,
        timeout=120,
        check=True,
        capture_output=True,
    )
    log = (workdir / "queries.log").read_text().split("== ")
    asked = {part.split("\n", 1)[0]: part.split("\n")[1:-1] for part in log if part}
    # As rendered: only the name as written, absolute; the mail waits (no such host).
    assert asked[lookup] == ["relay.tenant-b. A"]
    assert "status=deferred" in (workdir / lookup / "maillog").read_text()
    # The control: getaddrinfo applies the search list, and the relay "works".
    assert asked["native"][0] == "relay.tenant-b.tenant-a.svc.cluster.test. A"
    assert "status=sent" in (workdir / "native" / "maillog").read_text()
