"""The ready banner of ``mailstack up`` (local.terminal)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailstack.local.terminal import print_endpoints


def test_the_banner_names_every_listen_address(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    endpoints = {
        "listen": ["10.100.114.1", "[::1]"],
        "domains": {"example.com": {"smtp": 25, "imaps": 993}},
    }
    print_endpoints(endpoints, tmp_path)
    lines = capsys.readouterr().out.splitlines()
    assert any("10.100.114.1:25, [::1]:25" in line for line in lines), lines
    assert any("10.100.114.1:993, [::1]:993" in line for line in lines), lines


def test_an_ipv6_listen_address_without_brackets_gets_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    print_endpoints({"listen": ["::1"], "domains": {"example.org": {"smtp": 1025}}}, tmp_path)
    assert "[::1]:1025" in capsys.readouterr().out
