"""Shared clusters, the pure and in-process parts: the namespaces take turns for the reconcile
slots (``controller.fairness``), renders run off the event loop (``controller.render_pool``), and
only referenced Secrets are kept with their data (``controller.memory.SecretCache``).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailstack.api.limits import NamespaceLimits, admit_domains
from mailstack.api.policy import Grants, parse_policy
from mailstack.controller import plan
from mailstack.controller.fairness import FairSlots
from mailstack.controller.index import Documents
from mailstack.controller.memory import SecretCache
from mailstack.controller.render_pool import RenderPool
from mailstack.controller.volume_claims import requests_by_domain
from tests.unit.test_limits import dom, t
from tests.unit.test_policy import policy_doc


async def _order(slots: FairSlots, arrivals: list[str]) -> list[str]:
    """The order in which passes of these namespaces (arriving in this order) get a slot."""
    started: list[str] = []
    gate = asyncio.Event()

    async def one(ns: str) -> None:
        async with slots.slot(ns):
            started.append(ns)
            await gate.wait()

    tasks = [asyncio.create_task(one(ns)) for ns in arrivals]
    for _ in range(len(arrivals) + 2):
        await asyncio.sleep(0)
        gate.set()
        gate.clear()
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(*tasks)
    return started


def test_a_namespace_with_many_passes_waiting_does_not_hold_back_another() -> None:
    """200 passes of one namespace queued first: the other's one pass is the second to run,
    not the 201st (a semaphore served them first come, first served)."""
    slots = FairSlots(total=1, per_namespace=1)
    order = asyncio.run(_order(slots, ["hostile"] * 200 + ["tenant-b"]))
    assert order.index("tenant-b") <= 1
    assert order.count("hostile") == 200


def test_namespaces_take_turns() -> None:
    slots = FairSlots(total=1, per_namespace=1)
    order = asyncio.run(_order(slots, ["a", "a", "a", "b", "b", "c"]))
    assert order == ["a", "b", "c", "a", "b", "a"]


def test_a_namespace_alone_uses_half_the_slots() -> None:
    """The share is a floor: one tenant converging alone is not held to one pass at a time while
    a core idles (that cost 91-174 s instead of 78 s); half the slots stay for newcomers."""

    async def run() -> int:
        slots = FairSlots(total=4, per_namespace=1)
        release = asyncio.Event()
        tasks = [asyncio.create_task(_hold(slots, "tenant-a", release)) for _ in range(10)]
        await asyncio.sleep(0.01)
        running = slots.running("tenant-a")
        release.set()
        await asyncio.gather(*tasks)
        return running

    assert asyncio.run(run()) == 2


async def _hold(slots: FairSlots, ns: str, release: asyncio.Event) -> None:
    async with slots.slot(ns):
        await release.wait()


def test_a_newcomer_starts_at_once_beside_a_busy_namespace() -> None:
    """Ten passes of one namespace hold half the slots and wait for more; another tenant's pass
    arrives and starts at once; when a pass ends, the busy namespace gets its slot back."""

    async def run() -> tuple[int, int, int]:
        slots = FairSlots(total=4, per_namespace=1)
        first = asyncio.Event()
        rest = asyncio.Event()
        tasks = [asyncio.create_task(_hold(slots, "hostile", first))]
        tasks += [asyncio.create_task(_hold(slots, "hostile", rest)) for _ in range(9)]
        await asyncio.sleep(0.01)
        tasks.append(asyncio.create_task(_hold(slots, "tenant-b", rest)))
        await asyncio.sleep(0.01)
        newcomer = slots.running("tenant-b")
        busy = slots.running("hostile")
        first.set()  # one hostile pass ends: its slot goes back to hostile, under the ceiling
        await asyncio.sleep(0.01)
        after = slots.running("hostile")
        rest.set()
        await asyncio.gather(*tasks)
        return newcomer, busy, after

    assert asyncio.run(run()) == (1, 2, 2)


def test_a_pass_cancelled_while_waiting_leaves_its_slot_to_the_next() -> None:
    async def run() -> list[str]:
        slots = FairSlots(total=1, per_namespace=1)
        started: list[str] = []
        release = asyncio.Event()

        async def one(name: str, ns: str) -> None:
            async with slots.slot(ns):
                started.append(name)
                await release.wait()

        first = asyncio.create_task(one("first", "a"))
        cancelled = asyncio.create_task(one("cancelled", "b"))
        last = asyncio.create_task(one("last", "c"))
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(first, last)
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert slots.running("a") == slots.running("c") == 0
        return started

    assert asyncio.run(run()) == ["first", "last"]


def test_a_render_runs_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """While a render (key generation) runs, the event loop goes on: a slow render no longer
    stalls every other pass, informer and handler of the operator."""
    threads: list[str] = []

    def slow_render(inputs: plan.DomainInputs) -> plan.Rendered:
        threads.append(threading.current_thread().name)
        time.sleep(0.5)
        return plan.Rendered()

    monkeypatch.setattr(plan, "render_domain", slow_render)

    async def run() -> int:
        pool = RenderPool(2)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        inputs = plan.DomainInputs(domain={}, siblings=(), mailboxes=(), secrets={}, now=None)  # type: ignore[arg-type]
        await asyncio.gather(pool.render(inputs), pool.render(inputs))
        task.cancel()
        pool.close()
        return ticks

    ticks = asyncio.run(run())
    assert ticks >= 10, f"the event loop ran {ticks} times during two renders of 0.5 s"
    assert all(name.startswith("mailstack-render") for name in threads)


def _secret(name: str, version: str, value: str = "x" * 1000) -> dict[str, Any]:
    meta = {"name": name, "namespace": "t", "resourceVersion": version}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "stringData": {"v": value}}


def _box(name: str, secret: str) -> dict[str, Any]:
    spec = {"address": f"{name}@t.example", "passwordSecretRef": {"name": secret}}
    return {"kind": "Mailbox", "metadata": {"name": name, "namespace": "t"}, "spec": spec}


def test_only_referenced_secrets_are_kept_with_their_data() -> None:
    documents = Documents()
    cache = SecretCache(documents.references)
    documents.released = cache.release
    cache.put(_secret("blob", "1"))
    cache.put(_secret("pw", "1"))
    assert (cache.get("t", "blob"), cache.unloaded("t", "blob"), len(cache)) == (None, True, 0)
    documents.put_domain(_domain("t", "t.example"))
    documents.put_mailbox(_box("carol", "pw"))
    cache.put(_secret("pw", "2"))  # a change, or the pass's read on the first reference
    assert cache.get("t", "pw") is not None and not cache.unloaded("t", "pw")
    documents.put_mailbox(_box("carol", "pw"))  # the same reference again: kept
    assert cache.get("t", "pw") is not None
    documents.put_mailbox(_box("carol", "other"))  # the last reference gone: forgotten
    assert (cache.get("t", "pw"), cache.unloaded("t", "pw")) == (None, True)
    assert cache.drop("t", "pw") and not cache.unloaded("t", "pw")


def _domain(name: str, domain: str, relay_secret: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"domain": domain}
    if relay_secret is not None:
        spec["relay"] = {
            "host": "smtp.relay.example",
            "credentialsSecretRef": {"name": relay_secret},
        }
    return {"kind": "MailDomain", "metadata": {"name": name, "namespace": "t"}, "spec": spec}


def test_a_mailbox_refers_to_its_secret_only_on_a_domain_a_maildomain_may_serve() -> None:
    """#13 re-check F2: Mailboxes no MailDomain serves (or only an ungranted one) made the
    operator keep each one's large Secret: they refer to nothing until a MailDomain that may
    serve their domain comes, and again nothing once it goes."""
    granted = {"t.example"}
    documents = Documents(granted=lambda ns, domain: domain in granted)
    cache = SecretCache(documents.references)
    documents.released = cache.release
    documents.put_mailbox(_box("carol", "pw"))
    cache.put(_secret("pw", "1"))
    assert (cache.get("t", "pw"), cache.unloaded("t", "pw")) == (None, True)
    assert not cache.wanted("t", "pw")  # nor read by a pass (``user_secrets.read``)
    documents.put_domain(_domain("t", "t.example"))
    assert cache.wanted("t", "pw")
    cache.put(_secret("pw", "2"))
    assert cache.get("t", "pw") is not None
    documents.drop_domain("t", "t")  # its Mailboxes' Secrets are forgotten with it
    assert (cache.get("t", "pw"), cache.unloaded("t", "pw")) == (None, True)
    # The Mailboxes on an ungranted MailDomain's domain refer to nothing, nor does its relay
    # (only its DNS key counts, once it published: ``test_an_ungranted_maildomain_...``).
    documents.put_domain(_domain("t", "t.example", relay_secret="relay"))
    documents.put_domain(_domain("u", "u.example", relay_secret="other"))
    documents.put_mailbox(
        _box("dave", "pw2")
        | {"spec": {"address": "dave@u.example", "passwordSecretRef": {"name": "pw2"}}}
    )
    assert [documents.references("t", n) for n in ("relay", "other", "pw", "pw2")] == [
        True,
        False,
        True,
        False,
    ]
    # When the grants change, what no longer may be served is forgotten.
    cache.put(_secret("pw", "3"))
    assert cache.get("t", "pw") is not None
    granted.clear()
    documents.release_unreferenced()
    assert (cache.get("t", "pw"), cache.unloaded("t", "pw")) == (None, True)


def test_an_ungranted_maildomain_refers_only_to_the_dns_key_its_withdrawal_needs() -> None:
    """#13 check G11: an ungranted MailDomain kept its relay Secret (and any other it names)
    loaded, one large Secret per MailDomain of a namespace without a grant. Only its DNS
    provider's credentials count, and only while it may hold records (it published): removing
    them is all a refused MailDomain does."""
    granted: set[str] = set()
    documents = Documents(granted=lambda ns, domain: domain in granted)
    cache = SecretCache(documents.references)
    documents.released = cache.release
    doc = _domain("t", "t.example", relay_secret="relay")
    provider = {"rfc2136": {"server": "ns.t.example", "tsigSecretRef": {"name": "tsig"}}}
    doc["spec"]["dns"] = {"provider": provider}
    documents.put_domain(doc)
    for name in ("relay", "tsig"):
        cache.put(_secret(name, "1"))
    assert [cache.wanted("t", n) for n in ("relay", "tsig")] == [False, False]
    assert (cache.get("t", "relay"), cache.get("t", "tsig"), len(cache)) == (None, None, 0)
    documents.put_domain(doc | {"status": {"dns": {"published": True}}})  # it had served
    assert [cache.wanted("t", n) for n in ("relay", "tsig")] == [False, True]
    cache.put(_secret("tsig", "2"))  # the withdrawal's read
    assert cache.get("t", "tsig") is not None
    documents.put_domain(doc | {"status": {"dns": {"published": False}}})  # records removed
    assert (cache.get("t", "tsig"), cache.unloaded("t", "tsig")) == (None, True)
    granted.add("t.example")  # a grant: everything it names counts again
    assert [cache.wanted("t", n) for n in ("relay", "tsig")] == [True, True]


def _parsed_domain(name: str, created: str, **spec: Any) -> dict[str, Any]:
    """A MailDomain of namespace t that parses (the index parses it to judge it)."""
    meta = {"name": name, "namespace": "t", "uid": name, "creationTimestamp": created}
    meta["generation"] = 1
    doc = {"apiVersion": "mailstack.dev/v1alpha1", "kind": "MailDomain", "metadata": meta}
    return doc | {"spec": {"domain": f"{name}.t.example", **spec}}


def _parsed_box(name: str, domain: str, created: str) -> dict[str, Any]:
    meta = {"name": name, "namespace": "t", "uid": name, "creationTimestamp": created}
    spec = {"address": f"{name}@{domain}", "passwordSecretRef": {"name": f"pw-{name}"}}
    return {"apiVersion": "mailstack.dev/v1alpha1", "kind": "Mailbox", "metadata": meta} | {
        "spec": spec
    }


def test_a_maildomain_on_a_shared_server_refers_only_to_the_dns_key_its_withdrawal_needs() -> None:
    """#13 check H1: a granted MailDomain naming a MailServer (``ServerPending``, or
    ``ServerNotAllowed``) serves nothing, yet its Secrets and its Mailboxes' counted: each
    one made the operator read and keep a large Secret, beyond any ``maxMailDomains``."""
    documents = Documents(granted=lambda ns, domain: True)
    tsig = {"tsigKeyName": "k", "tsigSecretRef": {"name": "tsig"}}
    provider = {"rfc2136": {"server": "ns.t.example", **tsig}}
    doc = _parsed_domain("s", "2026-01-01T00:00:00Z", serverRef={"name": "shared"})
    doc["spec"]["dns"] = {"provider": provider}
    documents.put_domain(doc)
    documents.put_mailbox(_parsed_box("carol", "s.t.example", "2026-01-01T00:00:00Z"))
    assert [documents.references("t", n) for n in ("tsig", "pw-carol")] == [False, False]
    documents.put_domain(doc | {"status": {"dns": {"published": True}}})  # it had served
    assert [documents.references("t", n) for n in ("tsig", "pw-carol")] == [True, False]
    own = _parsed_domain("s", "2026-01-01T00:00:00Z", dns={"provider": provider})
    own["metadata"]["generation"] = 2  # its own stack again: everything counts
    documents.put_domain(own)
    assert [documents.references("t", n) for n in ("tsig", "pw-carol")] == [True, True]


def test_maildomains_and_mailboxes_over_the_limits_refer_to_nothing() -> None:
    """#13 check H1: ``maxMailDomains``/``maxMailboxes`` bounded what a granted tenant serves,
    not the Secrets the operator keeps: every MailDomain and Mailbox over the limits made it
    read and keep the Secret it names. The index asks the render's admission
    (``assemble.admit``): the oldest within the limits refer, the others do not, until an
    older one goes."""
    limited = policy_doc("t", ["t"], ["*.t.example"])
    limited["spec"]["limits"] = {"maxMailDomains": 1, "maxMailboxes": 1}
    grants = Grants((parse_policy(limited),))
    documents = Documents(granted=lambda ns, domain: True, grants=lambda: grants)
    cache = SecretCache(documents.references)
    documents.released = cache.release
    for i in (0, 1):
        relay = {"host": "smtp.relay.example", "credentialsSecretRef": {"name": f"relay{i}"}}
        documents.put_domain(_parsed_domain(f"d{i}", f"2026-01-0{i + 1}T00:00:00Z", relay=relay))
        documents.put_mailbox(_parsed_box(f"b{i}", "d0.t.example", f"2026-01-0{i + 1}T00:00:00Z"))
    names = ("relay0", "relay1", "pw-b0", "pw-b1")
    assert [documents.references("t", n) for n in names] == [True, False, True, False]
    cache.put(_secret("pw-b1", "1") | {"metadata": {"name": "pw-b1", "namespace": "t"}})
    assert (cache.get("t", "pw-b1"), cache.unloaded("t", "pw-b1")) == (None, True)
    documents.drop_mailbox("t", "b0")  # room for the next one
    documents.drop_domain("t", "d0")
    assert [documents.references("t", n) for n in names] == [False, True, False, False]
    documents.put_domain(_parsed_domain("d0", "2026-01-01T00:00:00Z"))
    assert [documents.references("t", n) for n in names] == [False, False, False, True]


# --- maxStorage counts the volume claims, retained ones too ----------------------------------

GI = 1024**3
STORAGE = {"storage": {"mailboxes": {"size": "2Gi"}, "queue": {"size": "1Gi"}}}


def test_retained_volume_claims_count_against_max_storage() -> None:
    """A deleted MailDomain's kept claims take their room first: renaming no longer adds
    volumes beyond maxStorage (re-check R4)."""
    limits = NamespaceLimits(max_storage=3 * GI, source="MailDomainPolicy/a")
    d1 = dom("d1", t(1), **STORAGE)
    assert admit_domains(limits, [d1]).refused == frozenset()
    refused = admit_domains(limits, [d1], {"d0": 3 * GI})
    assert refused.refused == {d1.ref}
    assert "3Gi by volume claims no MailDomain here holds" in refused.problems[0].message
    # Its own claims are its own: the same name again fits.
    assert admit_domains(limits, [dom("d0", t(1), **STORAGE)], {"d0": 3 * GI}).refused == set()


def test_a_shrunk_spec_counts_what_its_volumes_still_request() -> None:
    limits = NamespaceLimits(max_storage=4 * GI, source="MailDomainPolicy/a")
    small = {"storage": {"mailboxes": {"size": "1Gi"}, "queue": {"size": "1Gi"}}}
    d0, d1 = dom("d0", t(1), **small), dom("d1", t(2), **small)
    assert admit_domains(limits, [d0, d1]).refused == set()
    assert admit_domains(limits, [d0, d1], {"d0": 3 * GI}).refused == {d1.ref}


def test_volume_claims_are_summed_by_the_maildomain_they_were_made_for() -> None:
    def claim(name: str, instance: str | None, size: str) -> dict[str, Any]:
        labels = {"app.kubernetes.io/name": "mailstack"}
        if instance:
            labels["app.kubernetes.io/instance"] = instance
        spec = {"resources": {"requests": {"storage": size}}}
        return {"metadata": {"name": name, "labels": labels}, "spec": spec}

    claims = [
        claim("mail-d0-mda-0", "d0", "2Gi"),
        claim("queue-d0-mta-0", "d0", "1Gi"),
        claim("mail-d1-mda-0", "d1", "500Mi"),
        claim("odd", None, "1Gi"),
        claim("bad", "d1", "lots"),
    ]
    assert requests_by_domain(claims) == {"d0": 3 * GI, "d1": 500 * 1024**2}


# --- which cert-manager issuers a policy lets a tenant use -------------------------------------

TENANT_POLICY = """\
apiVersion: mailstack.dev/v1alpha1
kind: MailDomainPolicy
metadata: {name: tenant-a}
spec:
  namespaces: [tenant-a]
  domains: [a.example, "*.a.example"]
"""


def _render(tmp_path: Path, policy: str, kind: str, name: str) -> tuple[int, str, list[Any]]:
    """``mailstack render`` of MailDomain a with a certManager issuer under ``policy``: the
    exit code, the output and the issuerRefs of the Certificates rendered."""
    ref = f"{{name: {name}, kind: {kind}}}"
    tls = f"  tls:\n    issuer: certManager\n    certManager:\n      issuerRef: {ref}\n"
    tmp_path.mkdir()
    doc = tmp_path / "in.yaml"
    doc.write_text(
        policy + "---\napiVersion: mailstack.dev/v1alpha1\nkind: MailDomain\n"
        "metadata: {name: a, namespace: tenant-a}\nspec:\n  domain: a.example\n" + tls
    )
    out = tmp_path / "out"
    cli = Path(sys.executable).with_name("mailstack")
    done = subprocess.run(
        [str(cli), "render", "-f", str(doc), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    refs = [
        doc["spec"]["issuerRef"]
        for path in out.rglob("*.yaml")
        for doc in yaml.safe_load_all(path.read_text())
        if isinstance(doc, dict) and doc.get("kind") == "Certificate"
    ]
    return done.returncode, done.stdout + done.stderr, refs


def test_a_policy_decides_which_cluster_issuers_a_tenant_may_use(tmp_path: Path) -> None:
    """Re-check R9: the operator creates the Certificate with the issuerRef the tenant writes,
    with its own account, and a MailDomainPolicy could not say which issuers a namespace may
    use: the tenant named the platform's internal ClusterIssuer (trusted inside the cluster),
    or burned the shared ACME account's rate limits, the key landing in its own namespace."""
    code, output, refs = _render(
        tmp_path / "1", TENANT_POLICY, "ClusterIssuer", "platform-internal-ca"
    )
    assert refs == [] and code != 0
    assert (
        "IssuerNotAllowed" in output
        or "ClusterIssuer platform-internal-ca is not allowed" in output
    )
    listing = TENANT_POLICY + "  issuers: {clusterIssuers: [letsencrypt]}\n"
    code, output, refs = _render(tmp_path / "2", listing, "ClusterIssuer", "letsencrypt")
    assert code == 0, output
    assert [ref["name"] for ref in refs] == ["letsencrypt"]
    code, output, refs = _render(tmp_path / "3", listing, "ClusterIssuer", "platform-internal-ca")
    assert refs == [] and code != 0
    # An Issuer of the namespace itself is the tenant's own: always allowed.
    code, output, refs = _render(tmp_path / "4", TENANT_POLICY, "Issuer", "own-ca")
    assert code == 0, output
    assert [ref["kind"] for ref in refs] == ["Issuer"]


def test_several_policies_granting_a_domain_add_up_their_cluster_issuers() -> None:
    def pol(name: str, **spec: Any) -> Any:
        return parse_policy(
            {
                "apiVersion": "mailstack.dev/v1alpha1",
                "kind": "MailDomainPolicy",
                "metadata": {"name": name},
                "spec": {"namespaces": ["a"], "domains": ["*.t.example"], **spec},
            }
        )

    tls = {"issuer": "certManager", "certManager": {"issuerRef": {"name": "acme"}}}
    model = dom("x", t(1), tls=tls)
    assert Grants((pol("p1"),)).issuer_refusals(model) != []
    allowed = pol("p2", issuers={"clusterIssuers": ["acme"]})
    assert Grants((pol("p1"), allowed)).issuer_refusals(model) == []
    own = dom("y", t(1), tls={**tls, "certManager": {"issuerRef": {"name": "x", "kind": "Issuer"}}})
    assert Grants((pol("p1"),)).issuer_refusals(own) == []  # the namespace's own Issuer
    assert Grants(()).issuer_refusals(model) == []  # no policy: a single team's cluster


def _claim(ns: str, name: str, uid: str, generation: int = 1, **meta: Any) -> dict[str, Any]:
    metadata = {"name": name, "namespace": ns, "uid": uid, "generation": generation, **meta}
    metadata.setdefault("creationTimestamp", "2026-12-01T00:00:00Z")
    return {
        "apiVersion": "mailstack.dev/v1alpha1",
        "kind": "MailDomain",
        "metadata": metadata,
        "spec": {"domain": "a.example"},
    }


def test_only_a_change_of_a_claim_marks_the_other_claims_on_its_names() -> None:
    docs = Documents()
    docs.put_domain(_claim("tenant-a", "a", "uid-a"))
    assert ("tenant-a", "a") in docs.put_domain(_claim("tenant-b", "x", "uid-x"))
    # Labels, resourceVersion, conditions: the contest reads none of them.
    churn = _claim("tenant-b", "x", "uid-x", resourceVersion="7", labels={"churn": "1"})
    churn["status"] = {"conditions": [{"type": "Valid", "status": "False"}]}
    assert docs.put_domain(churn) == {("tenant-b", "x")}
    # A new spec, a new proof, or a re-created object (a new uid) does.
    moved = _claim("tenant-b", "x", "uid-x", generation=2)
    moved["spec"] = {"domain": "a.example", "hostname": "mx.a.example"}
    assert ("tenant-a", "a") in docs.put_domain(moved)
    proven = {**moved, "status": {"proof": {"token": "t", "proven": True}}}
    assert ("tenant-a", "a") in docs.put_domain(proven)
    assert ("tenant-a", "a") in docs.put_domain(_claim("tenant-b", "x", "uid-y"))


def test_contenders_are_parsed_once_per_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []
    real = plan.parse_maildomain

    def counted(doc: Any, source: str) -> Any:
        parsed.append(doc["metadata"]["name"])
        return real(doc, source)

    monkeypatch.setattr(plan, "parse_maildomain", counted)
    hostile = [_claim("tenant-b", f"x{i}", f"uid-cache-x{i}") for i in range(5)]
    mine = _claim("tenant-a", "a", "uid-cache-a")
    for _ in range(3):
        plan._parse_domains(hostile, ("tenant-a", "a"))
    assert sorted(n for n in parsed if n != "a") == [f"x{i}" for i in range(5)]
    plan._parse_domains([_claim("tenant-b", "x0", "uid-cache-x0", generation=2)], ("a", "a"))
    assert parsed.count("x0") == 2  # a new generation is parsed again
    assert plan._PARSED["uid-cache-x0"][0] == 2  # and replaces the older one
    plan._parse_domains([_claim("tenant-b", "x0", "uid-cache-x0", generation=1)], ("a", "a"))
    assert parsed.count("x0") == 3 and plan._PARSED["uid-cache-x0"][0] == 2  # not kept
    assert mine["metadata"]["uid"] not in plan._PARSED  # one's own spec: parsed by its render


def big_aliases(round_: int) -> dict[str, list[str]]:
    """``spec.aliases`` at the CRD's bounds (128 aliases of 32 targets of up to 318 characters):
    about 1 MiB of JSON, valid for the CRD and the parser; ``round_`` changes one target."""
    host = ("a" * 60 + ".") * 3 + "example"
    aliases = {f"al{i}": [f"{'x' * 58}{i:03d}{j}@{host}" for j in range(32)] for i in range(128)}
    aliases["al0"][0] = f"round{round_}@{host}"
    return aliases


def test_one_large_maildomain_written_again_and_again_is_parsed_into_one_copy() -> None:
    # The sixth #13 check (H5): a copy per (uid, generation), cleared at 4096, let one
    # MailDomain of some 1 MiB written 400 times (1.2 MiB per parse) pass the chart's 512Mi.
    raw = json.dumps({**_claim("hostile", "big", "uid-big"), "spec": {"domain": "h.example"}})
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for generation in range(1, 21):
            doc = json.loads(raw)  # as each watch event brings it
            doc["metadata"]["generation"] = generation
            doc["spec"]["aliases"] = big_aliases(generation)
            assert plan.parsed_contender(doc) is not None
            del doc
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    print(f"{held / 2**20:.1f} MiB held for 20 generations of one MailDomain")
    assert held < 4 * 2**20, f"{held / 2**20:.1f} MiB held for 20 generations of one spec"
    assert plan._PARSED["uid-big"][0] == 20
    docs = Documents()
    docs.put_domain(json.loads(raw))
    docs.drop_domain("hostile", "big")  # deleted: its parse goes too
    assert "uid-big" not in plan._PARSED


def test_a_change_of_what_no_contest_reads_marks_no_other_claim() -> None:
    # (uids of their own: contenders are parsed once per uid and generation, process-wide)
    docs = Documents()
    docs.put_domain(_claim("tenant-a", "a", "uid-churn-a"))
    rival = _claim("tenant-b", "x", "uid-churn-x")
    docs.put_domain(rival)
    for generation, pods in enumerate(({"labels": {"churn": "1"}}, {"resources": {}}), start=2):
        # The pods' labels and resources: rendered only, never read by admission or the contest.
        churned = _claim("tenant-b", "x", "uid-churn-x", generation=generation)
        churned["spec"] = {"domain": "a.example", "pods": pods}
        assert docs.put_domain(churned) == {("tenant-b", "x")}
    # An invalid spec holds no name, however it changes; becoming valid again does.
    for generation, bad in enumerate(("not a list", "still not"), start=4):
        invalid = _claim("tenant-b", "x", "uid-churn-x", generation=generation)
        invalid["spec"] = {"domain": "a.example", "resolvers": bad}
        changed = docs.put_domain(invalid)
        assert (("tenant-a", "a") in changed) is (generation == 4)
    assert ("tenant-a", "a") in docs.put_domain(
        _claim("tenant-b", "x", "uid-churn-x", generation=6)
    )
    # The pods' annotations are read (names they would publish): a change marks the others.
    annotated = _claim("tenant-b", "x", "uid-churn-x", generation=7)
    annotated["spec"] = {"domain": "a.example", "pods": {"annotations": {"k": "v"}}}
    assert ("tenant-a", "a") in docs.put_domain(annotated)


def test_spec_churn_of_a_claim_the_grants_refuse_marks_no_other_claim() -> None:
    # The sixth #13 check (H4): tenant-b, granted nothing of a.example, changes the aliases or
    # the serverRef of its refused claim on it again and again; assemble refuses it before any
    # contest, so tenant-a's MailDomain must not be reconciled for each change.
    def granted(namespace: str, domain: str) -> bool:
        return namespace == "tenant-a"

    for grants, marked in ((granted, False), (None, True)):  # None: no policies, all contend
        docs = Documents(granted=grants)
        docs.put_domain(_claim("tenant-a", "a", "uid-h4-a"))
        docs.put_domain(_claim("tenant-b", "x", "uid-h4-x"))
        changes = [{"aliases": {"a2": ["x@elsewhere.example"]}}, {"serverRef": {"name": "s2"}}]
        for generation, change in enumerate(changes, start=2):
            churned = _claim("tenant-b", "x", "uid-h4-x", generation=generation)
            churned["spec"] = {"domain": "a.example", **change}
            assert (("tenant-a", "a") in docs.put_domain(churned)) is marked, change
    # A change that makes the claim one the grants allow (its host name) marks the others.
    docs = Documents(granted=lambda namespace, domain: domain != "mail.a.example")
    docs.put_domain(_claim("tenant-a", "a", "uid-h4-a"))
    docs.put_domain(_claim("tenant-b", "x", "uid-h4-x"))
    moved = _claim("tenant-b", "x", "uid-h4-x", generation=2)
    moved["spec"] = {"domain": "a.example", "hostname": "mx.a.example"}
    assert ("tenant-a", "a") in docs.put_domain(moved)
