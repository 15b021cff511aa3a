"""proxmoxer underneath: one session, every call counted, every failure a `PveError`.

Reads are retried on transient failures; writes never are here, because a retried POST could
start a second migration (the caller decides, knowing what the write does). Per-guest reads
run through `fan_out`, a pool with a bounded number of calls in flight.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, TypeVar

import urllib3
from proxmoxer import ProxmoxAPI

from tasks.pve.endpoint import PveEndpoint
from tasks.pve.errors import PveError, classify
from tasks.pve.retry import RetryPolicy

log = logging.getLogger("proxflow.pve")
K = TypeVar("K")
T = TypeVar("T")


def open_api(endpoint: PveEndpoint) -> ProxmoxAPI:
    """A proxmoxer client; with a password this already logs in (one POST /access/ticket)."""
    verify: bool | str = endpoint.verify
    if verify is False:
        log.warning(
            "TLS verification is off for %s: the cluster's identity is not checked; "
            "set verify to its CA bundle path instead",
            endpoint.address,
        )
        # one warning above, not urllib3's one per request
        warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
    kwargs: dict[str, Any] = {
        "user": endpoint.user,
        "verify_ssl": verify,  # passed per request by proxmoxer, so REQUESTS_CA_BUNDLE can't win
        "timeout": endpoint.timeout,
    }
    if endpoint.token_name is not None and endpoint.token_value is not None:
        kwargs["token_name"] = endpoint.token_name
        kwargs["token_value"] = endpoint.token_value.get_secret_value()
    elif endpoint.password is not None:
        kwargs["password"] = endpoint.password.get_secret_value()
    try:
        return ProxmoxAPI(endpoint.address, **kwargs)
    except Exception as exc:
        raise classify(exc, "/access/ticket", endpoint.who) from None


class Transport:
    """Counted, classified GET/POST on `/api2/json/<path>`."""

    def __init__(self, api: ProxmoxAPI, who: str, retry: RetryPolicy, calls: int = 0) -> None:
        self._api = api
        self.who = who
        self.retry = retry
        self._calls = calls
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Transport({self.who}, calls={self._calls})"

    @property
    def calls(self) -> int:
        return self._calls

    def _count(self) -> None:
        with self._lock:
            self._calls += 1

    def get(self, path: str, **params: Any) -> Any:
        """GET, retried with back-off while the failure is transient."""
        return self.retry.run(lambda: self.get_once(path, **params))

    def get_once(self, path: str, **params: Any) -> Any:
        self._count()
        try:
            return self._api(path).get(**params)
        except Exception as exc:
            raise classify(exc, f"GET /{path}", self.who) from None

    def post(self, path: str, **data: Any) -> Any:
        """POST once. Booleans must already be 1/0: proxmoxer would send True as 'True'."""
        bad = [k for k, v in data.items() if isinstance(v, bool)]
        if bad:
            raise TypeError(f"send booleans as 1/0, not True/False: {bad}")
        self._count()
        try:
            return self._api(path).post(**data)
        except Exception as exc:
            raise classify(exc, f"POST /{path}", self.who) from None


# requests keeps 10 connections per host; more threads would open and drop extra ones
MAX_WORKERS = 10


def fan_out(
    jobs: Mapping[K, Callable[[], T]],
    *,
    workers: int,
    thread_name: str,
    failure: str,
    progress: Callable[[int, int], None] | None = None,
) -> dict[K, T]:
    """Run `jobs` with at most `workers` in flight; a job failing with a `PveError` is left out.

    `progress(done, total)` hears each finished job; the failures are logged once, as the
    `failure` template (with `{failed}` and `{total}`) followed by the first ten of them.
    """
    out: dict[K, T] = {}
    failed: list[str] = []
    with ThreadPoolExecutor(
        max_workers=max(1, min(workers, MAX_WORKERS)), thread_name_prefix=thread_name
    ) as pool:
        futures = {pool.submit(job): key for key, job in jobs.items()}
        for done, future in enumerate(as_completed(futures), start=1):
            key = futures[future]
            try:
                out[key] = future.result()
            except PveError as exc:
                failed.append(f"{key} ({exc.message})")
            if progress is not None:
                progress(done, len(jobs))
    if failed:
        log.warning(
            "%s: %s",
            failure.format(failed=len(failed), total=len(jobs)),
            "; ".join(failed[:10]) + (" ..." if len(failed) > 10 else ""),
        )
    return out
