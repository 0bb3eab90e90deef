#!/usr/bin/env python3
"""Echo server that stands in for the external services of the egress spec.

Stdlib only. Every request (any method) is answered with JSON describing what
the server received, so tests can assert on what the egress proxy sent:

    {"service": NAME, "method": "POST", "path": "/email", "query": "a=1",
     "headers": {"x-api-key": "..."}, "body": "...", "client_cert": "egress-proxy"}

``client_cert`` is the subject CN of the verified client certificate, or null.

Single service::

    standin.py --name notify --listen 127.0.0.1:0 \
        --tls-cert server.crt --tls-key server.key [--client-ca client-ca.crt] \
        [--status 200] [--status-for POST=201]

Several services in one process::

    standin.py --config services.json

where services.json is a list of objects with keys ``name``, ``listen`` and
optionally ``tls_cert``, ``tls_key``, ``client_ca``, ``status`` and
``status_for`` (either {"POST": 201} or ["POST=201"]), ``token_path`` and
``token_ttl``.

When a service is listening, one line ``READY <name> <port>`` is printed to
stdout (flushed); with port 0 the port is the one actually bound. SIGTERM and
SIGINT shut all services down and exit 0.

Optional OAuth2 token endpoint (for client-credentials tests): with
``--token-path /services/oauth2/token`` a POST to exactly that path returns
``{"access_token": "<name>-token-<n>", "token_type": "Bearer",
"expires_in": TTL, "request": <the usual echo>}`` with a counter n that
starts at 1, instead of the plain echo.
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Methods without a response body.
NO_BODY_STATUSES = {204, 304}
HANDSHAKE_TIMEOUT_S = 10.0


class ServiceConfig:
    def __init__(self, spec: dict[str, Any]) -> None:
        unknown = set(spec) - {
            "name",
            "listen",
            "tls_cert",
            "tls_key",
            "client_ca",
            "status",
            "status_for",
            "token_path",
            "token_ttl",
        }
        if unknown:
            raise ValueError(f"unknown service keys: {sorted(unknown)}")
        self.name: str = spec.get("name") or "standin"
        self.host, self.port = parse_listen(spec.get("listen") or "127.0.0.1:0")
        self.tls_cert: str | None = spec.get("tls_cert")
        self.tls_key: str | None = spec.get("tls_key")
        self.client_ca: str | None = spec.get("client_ca")
        self.status: int = int(spec.get("status") or 200)
        self.status_for: dict[str, int] = parse_status_for(spec.get("status_for"))
        self.token_path: str | None = spec.get("token_path")
        self.token_ttl: int = int(spec.get("token_ttl") or 3600)
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError(f"{self.name}: tls_cert and tls_key go together")
        if self.client_ca and not self.tls_cert:
            raise ValueError(f"{self.name}: client_ca requires tls_cert/tls_key")


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen wants HOST:PORT, got {listen!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def parse_status_for(value: Any) -> dict[str, int]:
    if not value:
        return {}
    if isinstance(value, dict):
        return {str(k).upper(): int(v) for k, v in value.items()}
    result = {}
    for item in value:
        method, sep, status = str(item).partition("=")
        if not sep or not status.isdigit():
            raise ValueError(f"status_for wants METHOD=STATUS, got {item!r}")
        result[method.strip().upper()] = int(status)
    return result


class StandinServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.ssl_context = make_ssl_context(config)
        self.token_counter = itertools.count(1)
        self.token_lock = threading.Lock()
        if ":" in config.host:
            self.address_family = socket.AF_INET6
        super().__init__((config.host, config.port), EchoHandler)

    def get_request(self):  # type: ignore[override]
        sock, addr = super().get_request()
        if self.ssl_context is not None:
            # Handshake lazily in the handler thread so a slow or failing
            # client cannot stall the accept loop.
            sock = self.ssl_context.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            )
        return sock, addr

    def handle_error(self, request, client_address) -> None:  # type: ignore[override]
        exc = sys.exc_info()[1]
        if isinstance(exc, (ssl.SSLError, ConnectionError, TimeoutError, OSError)):
            return  # rejected handshakes, resets: expected in TLS tests
        super().handle_error(request, client_address)


def make_ssl_context(config: ServiceConfig) -> ssl.SSLContext | None:
    if not config.tls_cert:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(config.tls_cert, config.tls_key)
    ctx.set_alpn_protocols(["http/1.1"])
    if config.client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=config.client_ca)
    return ctx


class EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: StandinServer

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(HANDSHAKE_TIMEOUT_S)
            self.request.do_handshake()
            self.request.settimeout(None)
        super().setup()

    def __getattr__(self, name: str):
        # BaseHTTPRequestHandler dispatches to do_<METHOD>; accept any method.
        if name.startswith("do_"):
            return self.echo
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        sys.stderr.write(f"[{self.server.config.name}] {format % args}\n")

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size_line = self.rfile.readline()
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # Skip trailers up to the terminating blank line.
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def client_cert_cn(self) -> str | None:
        if not isinstance(self.connection, ssl.SSLSocket):
            return None
        cert = self.connection.getpeercert()
        if not cert:
            return None
        for rdn in cert.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return value
        return None

    def echo(self) -> None:
        config = self.server.config
        body = self.read_body()
        path, _, query = self.path.partition("?")
        headers: dict[str, str] = {}
        for key, value in self.headers.items():
            key = key.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        echo = {
            "service": config.name,
            "method": self.command,
            "path": path,
            "query": query,
            "headers": headers,
            "body": body.decode("utf-8", errors="replace"),
            "client_cert": self.client_cert_cn(),
        }
        status = config.status_for.get(self.command.upper(), config.status)
        payload: dict[str, Any] = echo
        if config.token_path and self.command == "POST" and path == config.token_path:
            with self.server.token_lock:
                n = next(self.server.token_counter)
            status = 200
            payload = {
                "access_token": f"{config.name}-token-{n}",
                "token_type": "Bearer",
                "expires_in": config.token_ttl,
                "request": echo,
            }
        data = (json.dumps(payload, sort_keys=True) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Standin", config.name)
        if status in NO_BODY_STATUSES or self.command == "HEAD":
            if status not in NO_BODY_STATUSES:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            return
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def parse_args(argv: list[str]) -> list[ServiceConfig]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--config", help="JSON file listing several services")
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0 = any)")
    parser.add_argument("--name", default="standin")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--client-ca", help="require a client cert signed by this CA")
    parser.add_argument("--status", type=int, default=200)
    parser.add_argument(
        "--status-for",
        action="append",
        default=[],
        metavar="METHOD=STATUS",
        help="per-method status override, repeatable",
    )
    parser.add_argument("--token-path", help="serve OAuth2 tokens on POST to this path")
    parser.add_argument("--token-ttl", type=int, default=3600)
    args = parser.parse_args(argv)
    try:
        if args.config:
            with open(args.config, encoding="utf-8") as f:
                specs = json.load(f)
            if not isinstance(specs, list) or not specs:
                raise ValueError("--config wants a non-empty JSON list of services")
            return [ServiceConfig(spec) for spec in specs]
        return [
            ServiceConfig(
                {
                    "name": args.name,
                    "listen": args.listen,
                    "tls_cert": args.tls_cert,
                    "tls_key": args.tls_key,
                    "client_ca": args.client_ca,
                    "status": args.status,
                    "status_for": args.status_for,
                    "token_path": args.token_path,
                    "token_ttl": args.token_ttl,
                }
            )
        ]
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits


def main(argv: list[str]) -> int:
    configs = parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    servers: list[StandinServer] = []
    threads: list[threading.Thread] = []
    try:
        for config in configs:
            server = StandinServer(config)
            servers.append(server)
            thread = threading.Thread(
                target=server.serve_forever, name=config.name, daemon=True
            )
            thread.start()
            threads.append(thread)
            print(f"READY {config.name} {server.server_address[1]}", flush=True)
        while not stop.wait(0.5):
            pass
    except (OSError, ssl.SSLError) as exc:
        print(f"standin: {exc}", file=sys.stderr)
        return 1
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        for thread in threads:
            thread.join(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
