"""The HTTP listener of one server process: uvicorn (httptools parser, uvloop) on a thread of
its own, over a socket bound here so that several worker processes share the port with
SO_REUSEPORT, as their gRPC servers do; the kernel spreads connections over the workers."""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path

import uvicorn

from formats.errors import RecsvcError

log = logging.getLogger(__name__)


class HttpError(RecsvcError):
    """The HTTP port cannot be served (in use, not an address of this host)."""


def bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise HttpError(
            f"cannot listen for HTTP on {host}:{port} ({exc.strerror or exc}): set "
            "RECSVC_HTTP_PORT to a free port, or 0 to turn HTTP off"
        ) from None
    sock.setblocking(False)
    return sock


class HttpServer:
    """uvicorn serving ``app`` on a pre-bound socket, started and stopped from any thread."""

    def __init__(
        self,
        app: object,
        sock: socket.socket,
        tls: tuple[Path, Path] | None = None,
        trusted_proxies: tuple[str, ...] = (),
    ) -> None:
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        config = uvicorn.Config(
            app,  # type: ignore[arg-type]
            loop="uvloop",
            http="httptools",
            lifespan="off",
            access_log=False,  # the servicers log each call, as over gRPC
            log_config=None,  # keep the server's JSON logging
            log_level="warning",
            server_header=False,
            # X-Forwarded-For is believed only from these proxies (none by default).
            proxy_headers=bool(trusted_proxies),
            forwarded_allow_ips=list(trusted_proxies) or None,
            ssl_certfile=tls[0] if tls else None,
            ssl_keyfile=tls[1] if tls else None,
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)

    def _run(self) -> None:
        self._server.run(sockets=[self.sock])

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise HttpError(f"the HTTP server on port {self.port} did not start")
            time.sleep(0.01)

    def stop(self, grace: float = 5.0) -> None:
        self._server.should_exit = True
        self._thread.join(grace + 1.0)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(1.0)
        self.sock.close()
