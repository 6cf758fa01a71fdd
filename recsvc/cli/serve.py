"""`recsvc serve`: serve the published model over gRPC, HTTP/JSON and gRPC-Web."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from recsvc.cli.args import add_model_dir

if TYPE_CHECKING:
    from recsvc.cli.args import Subparsers


def register(sub: Subparsers) -> None:
    srv = sub.add_parser(
        "serve",
        help="serve the published model over gRPC and HTTP",
        description="Serve recsvc.v1 (Recommender, Events, Admin, Privacy), grpc.health.v1 and "
        "reflection over gRPC; every unary RPC also over HTTP (JSON, gRPC-Web) with the "
        "dashboard at /dashboard on the HTTP port. Every flag defaults to its environment "
        "variable (see docs/api.md and recsvc/config.py).",
    )
    add_model_dir(srv)
    srv.add_argument("--host", help="listen address (RECSVC_HOST, default 127.0.0.1)")
    srv.add_argument("--port", type=int, help="gRPC port (RECSVC_PORT, default 50051)")
    srv.add_argument(
        "--metrics-port",
        type=int,
        help="Prometheus port (RECSVC_METRICS_PORT, default 9464, 0 = off)",
    )
    srv.add_argument(
        "--http-port",
        type=int,
        help="HTTP/JSON, gRPC-Web and dashboard port (RECSVC_HTTP_PORT, default 8080, 0 = off)",
    )
    srv.add_argument("--workers", type=int, help="processes (RECSVC_WORKERS, default: CPU count)")
    srv.add_argument("--threads", type=int, help="request threads per process (RECSVC_THREADS, 8)")
    srv.add_argument("--tls-cert", type=Path, help="PEM certificate (RECSVC_TLS_CERT)")
    srv.add_argument("--tls-key", type=Path, help="PEM private key (RECSVC_TLS_KEY)")
    srv.add_argument(
        "--reload-interval",
        type=float,
        help="seconds between checks of MODEL_DIR/CURRENT (RECSVC_RELOAD_INTERVAL, 2)",
    )
    srv.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> None:
    from recsvc.config import ServeConfig
    from recsvc.logs import configure_json
    from recsvc.server import serve

    config = ServeConfig.from_env(
        model_dir=args.model_dir,
        host=args.host,
        port=args.port,
        metrics_port=args.metrics_port,
        http_port=args.http_port,
        workers=args.workers,
        threads=args.threads,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        reload_interval=args.reload_interval,
    )
    configure_json(logging.DEBUG if args.verbose else logging.INFO, config.log_sample)
    serve(config)
