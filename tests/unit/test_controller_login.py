"""The operator logs in with a kubeconfig whose user is an exec plugin (EKS, GKE) or a token.

No API server is contacted: logging in only reads credentials. The exec plugin here is a small
Python program printing an ExecCredential, as ``aws eks get-token`` does.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import kopf
import kubernetes.config.kube_config
import pytest
import yaml

from mailstack.controller.config import OperatorConfig
from mailstack.controller.handlers import Operator
from mailstack.controller.login import log_in

SERVER = "https://127.0.0.1:6443"
CREDENTIAL = {
    "apiVersion": "client.authentication.k8s.io/v1beta1",
    "kind": "ExecCredential",
    "status": {"token": "token-from-the-exec-plugin"},
}


def exec_user() -> dict[str, Any]:
    """A kubeconfig user whose token comes from an exec plugin, as EKS and GKE write them."""
    return {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": sys.executable,
            "args": ["-c", f"print({json.dumps(json.dumps(CREDENTIAL))})"],
        }
    }


def kubeconfig(path: Path, user: dict[str, Any]) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": SERVER, "insecure-skip-tls-verify": True}}
                ],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "ctx",
            }
        )
    )
    return path


@pytest.fixture
def outside_a_cluster(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setattr(kopf, "login_with_service_account", lambda **_: None)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return monkeypatch


def use(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    # The kubernetes client reads $KUBECONFIG once, at import; kopf's reader reads it each time.
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))


def test_an_exec_plugin_user_logs_in_with_the_plugins_token(
    outside_a_cluster: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    plugin = exec_user()
    path = kubeconfig(tmp_path / "config", plugin)
    use(outside_a_cluster, path)
    info = asyncio.run(log_in(kopf.OperatorSettings()))
    assert info.server == SERVER
    assert info.token == "token-from-the-exec-plugin"
    assert info.as_http_headers()["Authorization"] == "Bearer token-from-the-exec-plugin"
    # What kopf's own kubeconfig login makes of the same file: no credentials at all.
    assert kopf.login_with_kubeconfig(settings=kopf.OperatorSettings()).token is None


def test_the_operator_logs_in_through_the_exec_plugin(
    outside_a_cluster: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The login the operator's kopf handler and its API client use (Operator.login).
    plugin = exec_user()
    use(outside_a_cluster, kubeconfig(tmp_path / "config", plugin))
    operator = Operator(OperatorConfig())
    assert asyncio.run(operator.login()).token == "token-from-the-exec-plugin"


def test_a_token_user_logs_in_too(outside_a_cluster: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", {"token": "static-token"})
    use(outside_a_cluster, path)
    info = asyncio.run(log_in(kopf.OperatorSettings()))
    assert info.token == "static-token" and info.server == SERVER


def test_no_credentials_anywhere_is_a_login_error(
    outside_a_cluster: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    outside_a_cluster.delenv("KUBECONFIG", raising=False)
    outside_a_cluster.setenv("HOME", str(tmp_path))  # no ~/.kube/config
    missing = str(tmp_path / ".kube" / "config")
    outside_a_cluster.setattr(
        kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", missing
    )
    with pytest.raises(kopf.LoginError, match="no service account token and no kubeconfig"):
        asyncio.run(log_in(kopf.OperatorSettings()))
