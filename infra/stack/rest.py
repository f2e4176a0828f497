"""HTTP calls to the stack's servers: a short probe, and REST calls retried while busy."""

from __future__ import annotations

import time

import httpx

PROBE_TIMEOUT_S = 2.0
REST_TIMEOUT_S = 30.0  # a server still starting its services can be slow to answer
# Prefect answers 503 for errors worth retrying (a busy SQLite database); its client retries.
RETRY_STATUSES = {429, 502, 503}
RETRY_DELAYS_S = (1.0, 2.0, 4.0, 8.0, 15.0)


def http_client(timeout_s: float = PROBE_TIMEOUT_S) -> httpx.Client:
    # trust_env=False: a proxy from the environment must not see loopback traffic.
    return httpx.Client(timeout=timeout_s, trust_env=False)


def call(client: httpx.Client, method: str, url: str, **kwargs: object) -> httpx.Response:
    """One REST call, repeated while the server answers "busy, try again" (like Prefect's)."""
    for delay in (*RETRY_DELAYS_S, None):
        response = client.request(method, url, **kwargs)  # type: ignore[arg-type]
        if response.status_code not in RETRY_STATUSES or delay is None:
            return response
        time.sleep(delay)
    raise AssertionError("unreachable")


def answers(url: str) -> bool:
    try:
        with http_client() as client:
            return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False
