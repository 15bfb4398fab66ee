"""The kubelet's HTTPS endpoint, as far as the apiserver needs it: ``/containerLogs`` and ``/healthz``.

``GET /containerLogs/{namespace}/{pod}/{container}`` accepts follow, previous,
timestamps, sinceSeconds, sinceTime, tailLines and limitBytes; it answers text/plain
in HTTP/1.1 chunks, one flush per line while following. Log requests need a client
certificate signed by the cluster CA (the apiserver's kubelet-client certificate).
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from .logs import LogOptions, LogStore, read_log
from .timeutil import parse_ts

log = logging.getLogger(__name__)
_TRUE = ("1", "true", "True", "yes")


class BadRequest(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def parse_options(query: str) -> tuple[LogOptions, bool]:
    """LogOptions and ``previous`` from a query string; BadRequest for malformed values."""
    q = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}

    def integer(name: str) -> int | None:
        if name not in q or q[name] == "":
            return None
        try:
            value = int(q[name])
        except ValueError as exc:
            raise BadRequest(400, f"invalid {name}: {q[name]!r}") from exc
        if value < 0 or (name in ("limitBytes", "sinceSeconds") and value == 0):
            raise BadRequest(400, f"{name} must be {'positive' if name != 'tailLines' else 'non-negative'}")
        return value

    since_ns = None
    if q.get("sinceTime"):
        try:
            since_ns = parse_ts(q["sinceTime"])
        except ValueError as exc:
            raise BadRequest(400, str(exc)) from exc
    seconds = integer("sinceSeconds")
    if seconds is not None:
        since_ns = time.time_ns() - seconds * 1_000_000_000
    opts = LogOptions(
        follow=q.get("follow") in _TRUE,
        timestamps=q.get("timestamps") in _TRUE,
        since_ns=since_ns,
        tail_lines=integer("tailLines"),
        limit_bytes=integer("limitBytes"),
    )
    return opts, q.get("previous") in _TRUE


def _peer_closed(sock: socket.socket) -> bool:
    """True if the client hung up (checked while a follow waits for new lines)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        sock.setblocking(False)
        try:
            return sock.recv(1) == b""
        finally:
            sock.setblocking(True)
    except (ssl.SSLWantReadError, BlockingIOError):
        return False
    except (OSError, ValueError):
        return True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "LogServer"

    def log_message(self, fmt: str, *args: object) -> None:
        log.debug("kubelet endpoint: " + fmt, *args)

    def _plain(self, code: int, text: str) -> None:
        body = (text + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        url = urlparse(self.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        if url.path in ("/healthz", "/healthz/ping"):
            return self._plain(200, "ok")
        if len(parts) != 4 or parts[0] != "containerLogs":
            return self._plain(404, "404 page not found")
        if not self.server.require_client_cert(self.connection):
            return self._plain(401, "Unauthorized")
        try:
            opts, previous = parse_options(url.query)
            source = self.server.resolve(parts[1], parts[2], parts[3], previous)
        except BadRequest as exc:
            return self._plain(exc.code, str(exc))
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        buffered: list[bytes] = []
        size = 0
        try:
            for piece in read_log(source, opts):
                if piece:
                    buffered.append(piece)
                    size += len(piece)
                    if size < 65536 and not opts.follow:
                        continue
                if buffered:
                    self._chunk(b"".join(buffered))
                    buffered, size = [], 0
                elif _peer_closed(self.connection):
                    return
            if buffered:
                self._chunk(b"".join(buffered))
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
        self.wfile.flush()


class LogServer(ThreadingHTTPServer):
    """HTTPS server on 127.0.0.1:<port>; TLS handshakes happen in the per-connection threads."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, cert: Path, key: Path, ca: Path, store: LogStore) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.store = store
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        ctx.load_verify_locations(str(ca))
        ctx.verify_mode = ssl.CERT_OPTIONAL
        self.ssl_context = ctx
        self._thread: threading.Thread | None = None

    def finish_request(self, request, client_address) -> None:  # type: ignore[override]
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake from %s failed: %s", client_address, exc)
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    @staticmethod
    def require_client_cert(conn: socket.socket) -> bool:
        try:
            return bool(conn.getpeercert())  # type: ignore[attr-defined]
        except (AttributeError, ValueError):
            return False

    def resolve(self, namespace: str, pod: str, container: str, previous: bool):
        """The log (live or finished) to serve, or BadRequest with the kubelet's wording."""
        logs = self.store.lookup(namespace, pod)
        if logs is None:
            raise BadRequest(404, f'pod "{namespace}/{pod}" not found')
        if container not in logs.containers:
            raise BadRequest(404, f'container "{container}" in pod "{pod}" not found')
        instances = logs.containers[container]
        if previous:
            if len(instances) < 2:
                raise BadRequest(400, f'previous terminated container "{container}" in pod "{pod}" not found')
            return instances[-2]
        if not instances:
            reason = logs.waiting_reason(container) or "ContainerCreating"
            raise BadRequest(400, f'container "{container}" in pod "{pod}" is waiting to start: {reason}')
        return instances[-1]

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="kubelet-endpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
