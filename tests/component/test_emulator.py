"""The emulator behaves like kube-apiserver where the operator can tell (over real HTTP).

The operator tests are only as good as the emulator; these pin down each realistic behaviour it
adds to kmock (see the ``emulator`` package), so a regression there shows up here and not as a
puzzling operator failure.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.component.emulator import ApiServer, wait_for

CM = "/api/v1/namespaces/default/configmaps"
MD = "/apis/mailstack.dev/v1alpha1/namespaces/default/maildomains"


def call(
    api: ApiServer,
    method: str,
    path: str,
    body: Any = None,
    content_type: str = "application/json",
    agent: str = "test-client/1.0",
) -> tuple[int, dict[str, Any]]:
    data = (
        None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    )
    request = urllib.request.Request(
        api.url + path,
        data=data,
        method=method,
        headers={"Content-Type": content_type, "User-Agent": agent},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def configmap(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def apply(api: ApiServer, path: str, obj: dict[str, Any], manager: str, force: bool = False):
    query = f"?fieldManager={manager}" + ("&force=true" if force else "")
    return call(api, "PATCH", path + query, obj, "application/apply-patch+yaml")


def test_metadata_is_the_servers(api: ApiServer) -> None:
    status, created = call(
        api,
        "POST",
        CM,
        {
            **configmap("a", x="1"),
            "metadata": {"name": "a", "uid": "mine", "resourceVersion": "999"},
        },
    )
    assert status == 201
    meta = created["metadata"]
    assert meta["uid"] != "mine" and meta["namespace"] == "default"
    assert int(meta["resourceVersion"]) < 999 and meta["creationTimestamp"].endswith("Z")
    status, other = call(api, "POST", CM, configmap("b"))
    assert int(other["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    status, generated = call(api, "POST", CM, {"metadata": {"generateName": "gen-"}})
    assert status == 201 and generated["metadata"]["name"].startswith("gen-")
    assert call(api, "POST", CM, configmap("a"))[0] == 409
    status, _ = call(api, "POST", "/api/v1/namespaces/nowhere/configmaps", configmap("c"))
    assert status == 404


def test_generation_moves_with_the_spec_only(api: ApiServer) -> None:
    doc = {
        "apiVersion": "mailstack.dev/v1alpha1",
        "kind": "MailDomain",
        "metadata": {"name": "ex"},
        "spec": {"domain": "example.org"},
    }
    _, created = call(api, "POST", MD, doc)
    assert created["metadata"]["generation"] == 1
    _, labelled = call(
        api,
        "PATCH",
        f"{MD}/ex",
        {"metadata": {"labels": {"a": "b"}}},
        "application/merge-patch+json",
    )
    assert labelled["metadata"]["generation"] == 1
    assert labelled["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]
    _, changed = call(
        api,
        "PATCH",
        f"{MD}/ex",
        {"spec": {"hostname": "mx.example.org"}},
        "application/merge-patch+json",
    )
    assert changed["metadata"]["generation"] == 2
    # A patch that changes nothing writes nothing.
    status, same = call(
        api,
        "PATCH",
        f"{MD}/ex",
        {"spec": {"hostname": "mx.example.org"}},
        "application/merge-patch+json",
    )
    assert status == 200
    assert same["metadata"]["resourceVersion"] == changed["metadata"]["resourceVersion"]


def test_status_subresource_is_separate(api: ApiServer) -> None:
    doc = {
        "apiVersion": "mailstack.dev/v1alpha1",
        "kind": "MailDomain",
        "metadata": {"name": "ex"},
        "spec": {"domain": "example.org"},
        "status": {"mailboxes": 5},
    }
    _, created = call(api, "POST", MD, doc)
    assert "status" not in created  # dropped on create
    merge = "application/merge-patch+json"
    _, patched = call(api, "PATCH", f"{MD}/ex", {"status": {"mailboxes": 1}}, merge)
    assert "status" not in patched  # the main resource ignores status
    _, patched = call(
        api,
        "PATCH",
        f"{MD}/ex/status",
        {"status": {"mailboxes": 2}, "spec": {"hostname": "x.example.org"}},
        merge,
    )
    assert patched["status"] == {"mailboxes": 2}
    assert "hostname" not in patched["spec"] or patched["spec"]["hostname"] != "x.example.org"
    assert patched["metadata"]["generation"] == 1
    assert call(api, "PATCH", f"{CM}/nothing/status", {}, merge)[0] == 404


def test_stale_resource_version_is_a_conflict(api: ApiServer) -> None:
    _, created = call(api, "POST", CM, configmap("a", x="1"))
    old = created["metadata"]["resourceVersion"]
    merge = "application/merge-patch+json"
    assert call(api, "PATCH", f"{CM}/a", {"data": {"x": "2"}}, merge)[0] == 200
    stale = {"metadata": {"resourceVersion": old}, "data": {"x": "3"}}
    status, body = call(api, "PATCH", f"{CM}/a", stale, merge)
    assert status == 409 and body["reason"] == "Conflict"
    status, _ = call(
        api,
        "PUT",
        f"{CM}/a",
        {**configmap("a", x="4"), "metadata": {"name": "a", "resourceVersion": old}},
    )
    assert status == 409


def test_json_patch_test_failure_is_422(api: ApiServer) -> None:
    call(api, "POST", CM, configmap("a", x="1"))
    patch = [
        {"op": "test", "path": "/data/x", "value": "2"},
        {"op": "replace", "path": "/data/x", "value": "3"},
    ]
    status, _ = call(api, "PATCH", f"{CM}/a", patch, "application/json-patch+json")
    assert status == 422
    assert api.get("configmaps", "a")["data"] == {"x": "1"}


def test_server_side_apply_is_create_or_merge_with_ownership(api: ApiServer) -> None:
    status, created = apply(api, f"{CM}/a", {**configmap("a", x="1", y="2")}, "op")
    assert status == 200 and created["data"] == {"x": "1", "y": "2"}
    # Identical apply: no write.
    _, same = apply(api, f"{CM}/a", configmap("a", x="1", y="2"), "op")
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    # Someone else edits x and adds z.
    call(
        api,
        "PATCH",
        f"{CM}/a",
        {"data": {"x": "hand", "z": "3"}},
        "application/merge-patch+json",
        agent="kubectl-edit/1.30",
    )
    status, body = apply(api, f"{CM}/a", configmap("a", x="1"), "op")
    assert status == 409 and "kubectl-edit" in body["message"]
    # Forced: x is taken back; y (no longer applied) goes; z (someone else's) stays.
    status, forced = apply(api, f"{CM}/a", configmap("a", x="1"), "op", force=True)
    assert status == 200 and forced["data"] == {"x": "1", "z": "3"}
    managers = {m["manager"]: m for m in forced["metadata"]["managedFields"]}
    assert managers["op"]["operation"] == "Apply"
    assert "f:x" in managers["op"]["fieldsV1"]["f:data"]
    assert "f:x" not in managers["kubectl-edit"]["fieldsV1"]["f:data"]
    # Apply needs a field manager and the right kind.
    status, _ = call(api, "PATCH", f"{CM}/a", configmap("a"), "application/apply-patch+yaml")
    assert status == 400
    wrong = {**configmap("a"), "kind": "Secret"}
    assert apply(api, f"{CM}/a", wrong, "op")[0] == 400
    # YAML is accepted.
    yaml_body = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata: {k: v}\n"
    status, from_yaml = call(
        api, "PATCH", f"{CM}/b?fieldManager=op", yaml_body, "application/apply-patch+yaml"
    )
    assert status == 200 and from_yaml["data"] == {"k": "v"}


def test_schema_validation_and_cel_rules_give_422(api: ApiServer) -> None:
    base = {"apiVersion": "mailstack.dev/v1alpha1", "kind": "MailDomain"}
    status, body = call(
        api, "POST", MD, {**base, "metadata": {"name": "a"}, "spec": {"domain": "Not A Domain"}}
    )
    assert status == 422 and body["reason"] == "Invalid"
    status, body = call(api, "POST", MD, {**base, "metadata": {"name": "b"}, "spec": {}})
    assert status == 422 and "domain" in body["message"]
    # Unknown fields are pruned (fieldValidation=Warn, the default); defaults are applied.
    status, created = call(
        api,
        "POST",
        MD,
        {**base, "metadata": {"name": "c"}, "spec": {"domain": "example.org", "bogus": 1}},
    )
    assert status == 201 and "bogus" not in created["spec"]
    # A transition rule: the domain is immutable.
    status, body = call(
        api, "PATCH", f"{MD}/c", {"spec": {"domain": "example.net"}}, "application/merge-patch+json"
    )
    assert status == 422 and "immutable" in body["message"]
    # Built-in kinds: the Kubernetes schemas, and ownerReferences need a uid.
    bad_ref = {
        **configmap("d"),
        "metadata": {
            "name": "d",
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "x"}],
        },
    }
    status, body = call(api, "POST", CM, bad_ref)
    assert status == 422 and "uid" in body["message"]
    status, _ = call(api, "POST", CM, {**configmap("e"), "spec": {"unknown": True}})
    assert status == 422


def test_finalizers_and_garbage_collection(api: ApiServer) -> None:
    _, owner = call(
        api,
        "POST",
        CM,
        {**configmap("owner"), "metadata": {"name": "owner", "finalizers": ["test/hold"]}},
    )
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
    }
    call(
        api,
        "POST",
        CM,
        {**configmap("child"), "metadata": {"name": "child", "ownerReferences": [ref]}},
    )
    call(
        api,
        "POST",
        CM,
        {**configmap("orphan"), "metadata": {"name": "orphan", "ownerReferences": [ref]}},
    )
    status, deleting = call(api, "DELETE", f"{CM}/owner")
    assert status == 200 and deleting["metadata"]["deletionTimestamp"]
    assert api.get("configmaps", "child") is not None  # the owner still exists
    # Orphan one dependent first, then release the owner.
    call(
        api,
        "PATCH",
        f"{CM}/orphan",
        {"metadata": {"ownerReferences": None}},
        "application/merge-patch+json",
    )
    call(
        api,
        "PATCH",
        f"{CM}/owner",
        {"metadata": {"finalizers": []}},
        "application/merge-patch+json",
    )
    assert api.get("configmaps", "owner") is None
    assert api.get("configmaps", "child") is None  # collected
    assert api.get("configmaps", "orphan") is not None
    # A dependent created for an owner that is gone is collected too.
    call(
        api,
        "POST",
        CM,
        {**configmap("late"), "metadata": {"name": "late", "ownerReferences": [ref]}},
    )
    wait_for(lambda: api.get("configmaps", "late") is None)


def test_watch_resumes_replays_and_expires(api: ApiServer) -> None:
    _, first = call(
        api, "POST", CM, {**configmap("a"), "metadata": {"name": "a", "labels": {"app": "x"}}}
    )
    since = first["metadata"]["resourceVersion"]
    call(api, "POST", CM, configmap("b"))
    call(
        api,
        "PATCH",
        f"{CM}/a",
        {"metadata": {"labels": {"app": "y"}}},
        "application/merge-patch+json",
    )
    events: list[dict[str, Any]] = []

    def watch(query: str) -> None:
        url = f"{api.url}{CM}?watch=true&timeoutSeconds=1&{query}"
        with urllib.request.urlopen(url, timeout=5) as response:
            for line in response:
                events.append(json.loads(line))

    watch(f"resourceVersion={since}")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "b"),
        ("MODIFIED", "a"),
    ]
    events.clear()
    watch(f"resourceVersion={since}&labelSelector=app%3Dx")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("DELETED", "a")]
    events.clear()
    watch("labelSelector=app%3Dy")  # no resourceVersion: the current state first
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "a")]
    events.clear()
    # Events pushed while a watch is open arrive.
    thread = threading.Thread(target=watch, args=(f"resourceVersion={api.store.rv}",))
    thread.start()
    wait_for(lambda: api.call(lambda: len(api.store.watchers[("", "configmaps")])) > 0)
    call(api, "POST", CM, configmap("c"))
    thread.join()
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "c")]


@pytest.mark.parametrize("api", [{"history": 3}], indirect=True)
def test_watch_from_a_forgotten_version_is_gone(api: ApiServer) -> None:
    for name in "abcdef":
        call(api, "POST", CM, configmap(name))
    url = f"{api.url}{CM}?watch=true&timeoutSeconds=1&resourceVersion=2"
    with urllib.request.urlopen(url, timeout=5) as response:
        (line,) = list(response)
    event = json.loads(line)
    assert event["type"] == "ERROR" and event["object"]["code"] == 410


def test_statefulset_controller_makes_claims_and_status(api: ApiServer) -> None:
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 1,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete"},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "image": "db"}]},
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            ],
        },
    }
    status, _ = call(api, "POST", "/apis/apps/v1/namespaces/default/statefulsets", sts)
    assert status == 201
    claim = wait_for(lambda: api.get("persistentvolumeclaims", "data-db-0"))
    assert claim["metadata"]["ownerReferences"][0]["name"] == "db"
    ready = wait_for(
        lambda: (api.get("statefulsets", "db").get("status") or {}).get("readyReplicas")
    )
    assert ready == 1
    # Changing an immutable field is refused.
    status, body = call(
        api,
        "PATCH",
        "/apis/apps/v1/namespaces/default/statefulsets/db",
        {"spec": {"serviceName": "other"}},
        "application/merge-patch+json",
    )
    assert status == 422 and "Forbidden" in body["message"]
    call(api, "DELETE", "/apis/apps/v1/namespaces/default/statefulsets/db")
    assert api.get("persistentvolumeclaims", "data-db-0") is None


def test_secrets_store_string_data_as_data(api: ApiServer) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "stringData": {"password": "pw"},
    }
    status, created = call(api, "POST", "/api/v1/namespaces/default/secrets", secret)
    assert status == 201 and created["data"] == {"password": "cHc="}
    assert "stringData" not in created
