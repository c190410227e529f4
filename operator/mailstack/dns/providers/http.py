"""A small JSON-over-HTTP client for the provider APIs (PowerDNS, Cloudflare), stdlib only.

Owns: retries with backoff for what is worth retrying (HTTP 429 honouring ``Retry-After``, 500,
502, 503, 504, connection errors and timeouts), and the mapping of failures to one-line errors:
401/403 → ``CredentialsError``, anything else after the last attempt → ``ProviderError``. Other
4xx answers are returned to the caller, which knows the API's error format. Redirects are not
followed: a provider API has no reason to send one, and following it would carry the API key to
wherever it points, a host no check of the MailDomain's URL ever saw.

A request that times out (``timeout``: connecting and the whole answer, see ``reach``) is not
tried again: it raises ``ProviderTimeoutError`` at once, since a server that did not answer
within the timeout rarely answers the next time, and each try would hold a thread that long.
Retries stop too when the publication's deadline (``reach.Deadline``) would pass in the wait.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mailstack.dns.errors import CredentialsError, ProviderError, ProviderTimeoutError
from mailstack.dns.providers.reach import Reach, opener

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})

OPENER = opener(Reach())  # for the operator's own endpoints: no guard, the environment's proxy


@dataclass(frozen=True)
class Response:
    status: int
    body: Any
    headers: Mapping[str, str]


def _retry_after(value: str | None, default: float) -> float:
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, when.timestamp() - time.time())


class JsonApi:
    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        what: str,
        error_text: Callable[[Any], str],
        timeout: float = 10.0,
        attempts: int = 5,
        backoff: float = 0.5,
        max_wait: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        reach: Reach | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers)
        self.what = what
        self.error_text = error_text
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self.max_wait = max_wait
        self.sleep = sleep
        self.reach = reach or Reach()
        self.opener = opener(self.reach) if reach is not None else OPENER
        self.requests = 0

    def call(
        self,
        method: str,
        path: str,
        body: object = None,
        query: Mapping[str, str | int] | None = None,
    ) -> Response:
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json", **self.headers}
        if data is not None:
            headers["Content-Type"] = "application/json"
        last = ""
        deadline = self.reach.deadline
        for attempt in range(self.attempts):
            wait = min(self.max_wait, self.backoff * 2**attempt)
            request = urllib.request.Request(url, data=data, method=method, headers=headers)
            self.requests += 1
            timeout = deadline.cap(self.timeout, self.base_url) if deadline else self.timeout
            started = time.monotonic()
            try:
                with self.opener.open(request, timeout=timeout) as answer:
                    return Response(answer.status, _decode(answer.read()), dict(answer.headers))
            except urllib.error.HTTPError as err:
                payload = _decode(err.read())
                status = err.code
                text = self.error_text(payload) or err.reason
                if status in (401, 403):
                    raise CredentialsError(
                        f"{self.what}: {method} {path}: HTTP {status}: {text}"
                    ) from None
                if 300 <= status < 400:
                    raise ProviderError(
                        f"{self.what}: {method} {path}: HTTP {status}, a redirect to "
                        f"{err.headers.get('Location', '?')}: not followed"
                    ) from None
                if status not in RETRY_STATUS:
                    return Response(status, payload, dict(err.headers))
                last = f"HTTP {status}: {text}"
                wait = min(self.max_wait, _retry_after(err.headers.get("Retry-After"), wait))
            except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
                reason = getattr(err, "reason", err)
                if isinstance(reason, TimeoutError) or time.monotonic() - started >= timeout:
                    raise ProviderTimeoutError(
                        f"{self.what}: {method} {path}: {self.base_url} did not answer within "
                        f"{timeout:g} s"
                    ) from None
                last = f"cannot reach {self.base_url}: {reason}"
            if attempt + 1 < self.attempts:
                if deadline is not None and deadline.remaining() <= wait:
                    break  # no time left to wait and try again
                self.sleep(wait)
        raise ProviderError(f"{self.what}: {method} {path}: {last} (after {attempt + 1} attempts)")


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")[:200]
