"""The HTTPS front: threaded, keep-alive, PVE's envelope, reason phrases and status codes.

TLS handshakes run in the per-connection thread, so one slow client never stalls accept().
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import re
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pvesim.api import router as pve_router
from pvesim.api.cluster import RawJson
from pvesim.api.control import control as control_router
from pvesim.api.params import ApiError
from pvesim.api.routing import (
    Identity,
    Reply,
    Request,
    Route,
    Router,
    bind_params,
)
from pvesim.auth import Authenticator
from pvesim.cluster import Cluster

log = logging.getLogger("pvesim")
API_PREFIX = "/api2/json"
GZIP_MIN = 1024
EMPTY_BODY_CODES = {401, 595, 596}


class SimHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        cluster: Cluster,
        auth: Authenticator,
        tls: ssl.SSLContext,
        seed: int,
    ) -> None:
        self.cluster = cluster
        self.auth = auth
        self.tls = tls
        self.fault_rng = random.Random(seed)
        self.fault_lock = threading.Lock()
        super().__init__(address, SimRequestHandler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        self.RequestHandlerClass(conn, client_address, self)  # type: ignore[arg-type]

    def roll_fault(self, rate: float) -> bool:
        with self.fault_lock:
            return self.fault_rng.random() < rate


class SimRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pve-api-daemon/3.0"
    sys_version = ""
    # TCP_NODELAY: headers and body go out as two writes; with Nagle the body waits for the
    # client's delayed ACK, ~40 ms on every keep-alive request
    disable_nagle_algorithm = True
    server: SimHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- plumbing ---------------------------------------------------------------------------
    def _params(self) -> tuple[str, dict[str, Any], bool]:
        parsed = urllib.parse.urlsplit(self.path)
        params: dict[str, Any] = {}
        for key, values in urllib.parse.parse_qs(parsed.query, keep_blank_values=True).items():
            params[key] = "\0".join(values)
        json_body = False
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            raw = self.rfile.read(length)
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if ctype == "application/json":
                json_body = True
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    raise ApiError(400, "malformed JSON body") from None
                if not isinstance(body, dict):
                    raise ApiError(400, "JSON body must be an object")
                params.update(body)
            else:
                for key, values in urllib.parse.parse_qs(
                    raw.decode(), keep_blank_values=True
                ).items():
                    params[key] = "\0".join(values)
        return urllib.parse.unquote(parsed.path), params, json_body

    def _dispatch(self, method: str) -> None:
        try:
            path, params, json_body = self._params()
            if path.startswith("/_sim/"):
                payload = self._handle(control_router, method, path, params, json_body, api=False)
            elif path.startswith(API_PREFIX + "/") or path == API_PREFIX:
                sub = path[len(API_PREFIX) :] or "/"
                payload = self._handle(pve_router, method, sub, params, json_body, api=True)
            elif path.startswith("/api2/"):
                raise ApiError(501, "no such uri")  # a format other than json, or none
            else:
                raise ApiError(501, f"Method '{method} {path}' not implemented")
        except ApiError as err:
            self._send_error(err)
        except Exception as exc:  # a bug in the simulator: answer like a PVE handler die
            log.exception("simulator error on %s %s", method, self.path)
            self._send_error(ApiError(500, f"internal simulator error: {exc}"))
        else:
            self._send_ok(payload)

    def _handle(
        self,
        router: Router,
        method: str,
        path: str,
        params: dict[str, Any],
        json_body: bool,
        api: bool,
    ) -> bytes:
        """One call; `api`: a PVE API call, counted and open to faults (control calls are not)."""
        srv = self.server
        cluster = srv.cluster
        route, bound = router.match(method, path, cluster.version)
        if api:
            cluster.requests.add(method, route.template)
        identity = None
        if not route.public:
            try:
                identity = srv.auth.identify(
                    method,
                    self.headers.get("Authorization"),
                    _cookie(self.headers.get("Cookie"), "PVEAuthCookie"),
                    self.headers.get("CSRFPreventionToken"),
                )
            except ApiError as err:
                if err.status == 401 and srv.auth.failure_delay:
                    time.sleep(srv.auth.failure_delay)
                raise
        if api:
            self._inject_faults(path)
        values = bind_params(route, cluster.version, bound, params, json_body)
        with cluster.lock:
            now = cluster.catch_up()
            self._check_node_reachable(route, bound)
            req = Request(
                cluster=cluster,
                identity=identity or _ANONYMOUS,
                params=values,
                now=now,
                method=method,
                path=path,
                login=srv.auth.login,
            )
            if route.privilege is not None:
                priv, acl = route.privilege
                req.require(priv, acl.format(**bound))
            result = route.handler(req)
            if method != "GET":
                cluster.touch()
        return _envelope(result)

    def _inject_faults(self, path: str) -> None:
        f = self.server.cluster.faults
        if f.latency:
            time.sleep(f.latency)
        targeted = f.error_path is None or re.search(f.error_path, path)
        if f.error_rate and targeted and self.server.roll_fault(f.error_rate):
            raise ApiError(f.error_code, f.error_message)

    def _check_node_reachable(self, route: Route, bound: dict[str, str]) -> None:
        node = bound.get("node")
        cluster = self.server.cluster
        if route.proxied and node in cluster.nodes and not cluster.nodes[node].online:
            delay = cluster.faults.offline_delay
            if delay:
                time.sleep(delay)
            raise ApiError(595, "No route to host")

    def _send_ok(self, body: bytes) -> None:
        self._write(200, "OK", body)

    def _send_error(self, err: ApiError) -> None:
        if err.status in EMPTY_BODY_CODES:
            body = b""
        else:
            doc: dict[str, Any] = {"data": None, "message": err.message.rstrip("\n") + "\n"}
            if err.errors:
                doc["errors"] = err.errors
            body = json.dumps(doc).encode()
        self._write(err.status, err.reason, body)

    def _write(self, status: int, reason: str, body: bytes) -> None:
        encoding = None
        if len(body) > GZIP_MIN and "gzip" in (self.headers.get("Accept-Encoding") or ""):
            body = _gzip(body)
            encoding = "gzip"
        try:
            self.send_response(status, reason)
            self.send_header("Content-Type", "application/json;charset=UTF-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "max-age=0")
            self.send_header("Pragma", "no-cache")
            if encoding:
                self.send_header("Content-Encoding", encoding)
            self.end_headers()
            self.wfile.write(body)
        except (TimeoutError, BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True


def _cookie(header: str | None, name: str) -> str | None:
    if not header:
        return None
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def _gzip(body: bytes) -> bytes:
    if not isinstance(body, RawJson):
        return gzip.compress(body, compresslevel=1)
    # a cached body (GET /cluster/resources) goes out many times per refresh: compress it once
    if body.gzipped is None:
        body.gzipped = gzip.compress(body, compresslevel=1)
    return body.gzipped


def _envelope(result: Any) -> bytes:
    if isinstance(result, RawJson):
        return result  # as is, not a copy: it carries its cached gzip form
    if isinstance(result, Reply):
        doc: dict[str, Any] = {"data": result.data}
        if result.total is not None:
            doc["total"] = result.total
    else:
        doc = {"data": result}
    return json.dumps(doc, separators=(",", ":")).encode()


_ANONYMOUS = Identity("", frozenset(), ticket_auth=False)
