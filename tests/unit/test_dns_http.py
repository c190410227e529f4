"""The provider APIs' HTTP client follows no redirect: the API key never leaves for another host."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mailstack.dns.errors import ProviderError
from mailstack.dns.providers.http import JsonApi
from tests.fakes.recording_http import Seen, recording


@pytest.fixture
def elsewhere() -> Iterator[tuple[str, list[Seen]]]:
    with recording() as server:
        yield server


def test_a_redirect_is_refused_and_the_key_stays_put(
    elsewhere: tuple[str, list[Seen]],
) -> None:
    target, target_seen = elsewhere
    with recording(location=f"{target}/latest/meta-data/") as (url, seen):
        api = JsonApi(url, {"X-API-Key": "secret"}, "PowerDNS", lambda _: "", attempts=1)
        with pytest.raises(ProviderError, match=r"HTTP 302, a redirect to .* not followed"):
            api.call("GET", "/api/v1/servers")
        assert [(s.path, s.headers.get("x-api-key")) for s in seen] == [
            ("/api/v1/servers", "secret")
        ]
    assert target_seen == []  # never asked, so never given the key
