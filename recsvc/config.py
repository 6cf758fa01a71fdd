"""Server configuration: typed, from environment variables, overridable by `recsvc serve` flags.

| variable | default | meaning |
|---|---|---|
| RECSVC_MODEL_DIR | var/models | model bundles (CURRENT names the one to serve) |
| RECSVC_HOST | 127.0.0.1 | address to listen on |
| RECSVC_PORT | 50051 | gRPC port |
| RECSVC_METRICS_PORT | 9464 | Prometheus metrics over HTTP (0 = off) |
| RECSVC_HTTP_PORT | 8080 | HTTP/JSON, gRPC-Web and the dashboard (0 = off) |
| RECSVC_CORS_ORIGINS | (none) | web origins allowed to call the HTTP port, comma-separated |
| RECSVC_ADDRESS_RATE_LIMIT | 20/s:60 | per client address and worker, calls of `public` tokens |
| RECSVC_TRUSTED_PROXIES | (none) | proxies whose X-Forwarded-For names the client address |
| RECSVC_WORKERS | CPU count | server processes sharing the port (SO_REUSEPORT) |
| RECSVC_THREADS | 8 | request threads per process |
| RECSVC_AUTH_TOKENS | (none) | "tok1=recommend+events,tok2=admin" |
| RECSVC_AUTH_TOKENS_FILE | (none) | same format, one token per line |
| RECSVC_TLS_CERT, RECSVC_TLS_KEY | (none) | PEM files; both set = TLS |
| RECSVC_RELOAD_INTERVAL | 2 | seconds between checks of MODEL_DIR/CURRENT |
| RECSVC_REPEAT_CATEGORIES | (none) | comma-separated categories never excluded as purchased |
| RECSVC_MAX_PER_CATEGORY | 0 | default diversity cap per response (0 = none) |
| RECSVC_FOLD_IN | 1 | 0 = ignore real-time activity when scoring (purchases still drop out) |
| RECSVC_OFFERS | (none) | the offer catalog file (YAML or JSON) for RecommendOffers |
| RECSVC_PROMOTIONS | (none) | the promotions file (YAML or JSON) for RecommendProducts |
| RECSVC_EXPLORATION_SHARE | 0.1 | share of RecommendProducts slots for new products (0 = off) |
| RECSVC_NEW_PRODUCT_DAYS | 30 | products introduced this many days ago or less are new |
| RECSVC_TRENDING_MIN_EVENTS | 2 | decayed interest events a product needs to count as trending |
| RECSVC_TRENDING_REFRESH | 2 | seconds a worker reuses the trend counters it read |
| RECSVC_RATE_LIMIT | 0 | calls per second per token and worker, "RATE[/s][:BURST]" (0 = off) |
| RECSVC_LOG_SAMPLE | 1 | share of answers logged (one JSON line each); warnings always |
| RECSVC_MAX_CONCURRENT_RPCS | 16 x threads | calls held per worker; more: RESOURCE_EXHAUSTED |
| RECSVC_EXPERIMENTS | (none) | the experiments file (YAML or JSON): A/B arms over model versions |
| RECSVC_PAGE_TOKEN_KEY | (see below) | secret signing page tokens; the same on every replica |
| RECSVC_PAGE_TTL | 1800 | seconds a paged list is continued after its last page |

Without RECSVC_PAGE_TOKEN_KEY, `recsvc serve` on loopback keeps a generated key in a private
file beside the dev token (so workers and restarts agree); elsewhere paging is off.

Redis settings (REDIS_URL, RECSVC_REDIS_DIR, ...) are read by feature_store.connection.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from feature_store.connection import RedisSettings, SettingsError
from formats.errors import RecsvcError
from recsvc.ratelimit import Limit
from recsvc.services import SCOPES


class ConfigError(RecsvcError, ValueError):
    """A setting that cannot work; the message names the variable or flag."""


def parse_tokens(text: str, source: str) -> dict[str, frozenset[str]]:
    """ "tok1=recommend+events,tok2=admin" (commas or newlines) -> {token: scopes}."""
    tokens: dict[str, frozenset[str]] = {}
    lines = (line.strip() for line in text.splitlines())
    for raw in (e for line in lines if not line.startswith("#") for e in line.split(",")):
        entry = raw.strip()
        if not entry:
            continue
        token, sep, scopes = entry.rpartition("=")  # tokens may end in base64 "=" padding
        parts = [s.strip() for s in scopes.split("+")]
        names = frozenset(parts)
        unknown = names - set(SCOPES)  # "" (from "admin+" or "a++b") is unknown too
        if not sep or not token.strip() or not names or unknown:
            shown = token.strip()[:4] + "..." if token.strip() else "(empty)"
            raise ConfigError(
                f"{source}: bad entry for token {shown}: expected TOKEN=SCOPE[+SCOPE...] "
                f"with scopes from {', '.join(SCOPES)}"
            )
        tokens[token.strip()] = names
    return tokens


# A shopper's page makes a few calls per view; a script hammering from one address is cut off.
PUBLIC_ADDRESS_LIMIT = Limit(20.0, 60.0)


def origin_problem(origin: str) -> str | None:
    """Why ``origin`` is not a web origin as browsers send it (scheme://host[:port]), or None.
    "*" (any origin) is allowed."""
    if origin == "*":
        return None
    scheme, sep, rest = origin.partition("://")
    if (
        scheme not in ("http", "https")
        or not sep
        or not rest
        or "/" in rest
        or origin != origin.lower()
    ):
        return (
            f"{origin!r} is not an origin: write scheme://host[:port] in lower case, without "
            "a path or trailing slash, e.g. https://shop.example.com"
        )
    return None


@dataclass(frozen=True)
class ServeConfig:
    model_dir: Path = Path("var/models")
    host: str = "127.0.0.1"
    port: int = 50051
    metrics_port: int = 9464
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    threads: int = 8
    auth_tokens: dict[str, frozenset[str]] = field(default_factory=dict)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    reload_interval: float = 2.0
    repeat_categories: frozenset[str] = frozenset()
    max_per_category: int = 0
    fold_in: bool = True
    offers: Path | None = None
    promotions: Path | None = None
    exploration_share: float = 0.1
    new_product_days: float = 30.0
    trending_min_events: float = 2.0
    trending_refresh: float = 2.0
    rate_limit: Limit | None = None  # per token, per worker process
    max_concurrent_rpcs: int = 0  # 0 = 16 x threads
    http_port: int = 8080  # 0 = no HTTP
    cors_origins: tuple[str, ...] = ()
    # Per client address and worker, for calls the `public` scope grants.
    address_rate_limit: Limit | None = PUBLIC_ADDRESS_LIMIT
    trusted_proxies: tuple[str, ...] = ()
    log_sample: float = 1.0  # share of request log lines kept
    experiments: Path | None = None
    page_token_key: str = ""  # "" in start(): a key of this process only (tests)
    page_ttl: int = 1800
    paging: bool = True  # off when serving off loopback without a key
    redis: RedisSettings = field(default_factory=RedisSettings)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> ServeConfig:
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}

        def get(name: str) -> str | None:
            value = env.get(name)
            return value if value not in (None, "") else None

        def number(name: str, kind: type[int] | type[float]) -> Any:
            value = get(name)
            if value is None:
                return None
            try:
                return kind(value)
            except ValueError:
                raise ConfigError(f"{name}={value!r} is not a number") from None

        simple = {
            "model_dir": ("RECSVC_MODEL_DIR", Path),
            "host": ("RECSVC_HOST", str),
            "tls_cert": ("RECSVC_TLS_CERT", Path),
            "tls_key": ("RECSVC_TLS_KEY", Path),
            "offers": ("RECSVC_OFFERS", Path),
            "promotions": ("RECSVC_PROMOTIONS", Path),
            "experiments": ("RECSVC_EXPERIMENTS", Path),
            "page_token_key": ("RECSVC_PAGE_TOKEN_KEY", str),
        }
        for key, (name, convert) in simple.items():
            if (value := get(name)) is not None:
                values[key] = convert(value)
        numbers: tuple[tuple[str, str, type[int] | type[float]], ...] = (
            ("port", "RECSVC_PORT", int),
            ("metrics_port", "RECSVC_METRICS_PORT", int),
            ("http_port", "RECSVC_HTTP_PORT", int),
            ("workers", "RECSVC_WORKERS", int),
            ("threads", "RECSVC_THREADS", int),
            ("reload_interval", "RECSVC_RELOAD_INTERVAL", float),
            ("max_per_category", "RECSVC_MAX_PER_CATEGORY", int),
            ("max_concurrent_rpcs", "RECSVC_MAX_CONCURRENT_RPCS", int),
            ("exploration_share", "RECSVC_EXPLORATION_SHARE", float),
            ("new_product_days", "RECSVC_NEW_PRODUCT_DAYS", float),
            ("trending_min_events", "RECSVC_TRENDING_MIN_EVENTS", float),
            ("trending_refresh", "RECSVC_TRENDING_REFRESH", float),
            ("log_sample", "RECSVC_LOG_SAMPLE", float),
            ("page_ttl", "RECSVC_PAGE_TTL", int),
        )
        for key, name, kind in numbers:
            if (value := number(name, kind)) is not None:
                values[key] = value
        if (value := get("RECSVC_REPEAT_CATEGORIES")) is not None:
            values["repeat_categories"] = frozenset(
                c.strip() for c in value.split(",") if c.strip()
            )
        tokens: dict[str, frozenset[str]] = {}
        if (value := get("RECSVC_AUTH_TOKENS")) is not None:
            tokens.update(parse_tokens(value, "RECSVC_AUTH_TOKENS"))
        if (value := get("RECSVC_AUTH_TOKENS_FILE")) is not None:
            try:
                text = Path(value).read_text()
            except OSError as exc:
                raise ConfigError(f"RECSVC_AUTH_TOKENS_FILE: cannot read {value}: {exc}") from exc
            tokens.update(parse_tokens(text, value))
        if tokens:
            values["auth_tokens"] = tokens
        for key, name in (
            ("rate_limit", "RECSVC_RATE_LIMIT"),
            ("address_rate_limit", "RECSVC_ADDRESS_RATE_LIMIT"),
        ):
            if (value := get(name)) is not None:
                try:
                    values[key] = Limit.parse(value, name)
                except ValueError as exc:
                    raise ConfigError(str(exc)) from None
        for key, name in (
            ("cors_origins", "RECSVC_CORS_ORIGINS"),
            ("trusted_proxies", "RECSVC_TRUSTED_PROXIES"),
        ):
            if (value := get(name)) is not None:
                values[key] = tuple(v.strip() for v in value.split(",") if v.strip())
        if (value := get("RECSVC_FOLD_IN")) is not None:
            if value not in ("0", "1"):
                raise ConfigError(f"RECSVC_FOLD_IN={value!r}: use 1 or 0")
            values["fold_in"] = value == "1"
        known = {f.name for f in fields(cls)}
        values.update({k: v for k, v in overrides.items() if v is not None and k in known})
        try:  # after the overrides: the embedded Redis lives beside the model directory
            values["redis"] = RedisSettings.from_env(values.get("model_dir", cls.model_dir), env)
        except SettingsError as exc:
            raise ConfigError(str(exc)) from None
        return replace(cls(), **values).checked()

    def checked(self) -> ServeConfig:
        if not 0 <= self.port < 65536:  # 0: any free port (tests)
            raise ConfigError(f"port {self.port} is out of range 0..65535")
        if self.port == 0 and self.workers > 1:
            raise ConfigError(
                "port 0 (any free port) needs --workers 1: workers must share one port"
            )
        if not 0 <= self.metrics_port < 65536:
            raise ConfigError(f"metrics port {self.metrics_port} is out of range 0..65535")
        if not 0 <= self.http_port < 65536:
            raise ConfigError(f"HTTP port {self.http_port} is out of range 0..65535")
        if self.http_port and self.http_port in (self.port, self.metrics_port):
            raise ConfigError(
                f"HTTP port {self.http_port} is also the gRPC or metrics port: give each its own"
            )
        for origin in self.cors_origins:
            if problem := origin_problem(origin):
                raise ConfigError(f"RECSVC_CORS_ORIGINS: {problem}")
        if self.workers < 1 or self.threads < 1:
            raise ConfigError("workers and threads must be at least 1")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("TLS needs both RECSVC_TLS_CERT and RECSVC_TLS_KEY (or neither)")
        for name, path in (("RECSVC_TLS_CERT", self.tls_cert), ("RECSVC_TLS_KEY", self.tls_key)):
            if path is not None and not os.access(path, os.R_OK):
                raise ConfigError(f"{name}={path}: no such readable file")
        if not (math.isfinite(self.reload_interval) and self.reload_interval > 0):
            raise ConfigError(f"RECSVC_RELOAD_INTERVAL={self.reload_interval}: must be > 0 seconds")
        if self.max_per_category < 0:
            raise ConfigError(f"RECSVC_MAX_PER_CATEGORY={self.max_per_category}: must be >= 0")
        if not (math.isfinite(self.exploration_share) and 0 <= self.exploration_share <= 0.5):
            raise ConfigError(
                f"RECSVC_EXPLORATION_SHARE={self.exploration_share}: use 0 (off) to 0.5"
            )
        for name, value in (
            ("RECSVC_NEW_PRODUCT_DAYS", self.new_product_days),
            ("RECSVC_TRENDING_MIN_EVENTS", self.trending_min_events),
            ("RECSVC_TRENDING_REFRESH", self.trending_refresh),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name}={value}: must be a number above 0")
        if not 0.0 <= self.log_sample <= 1.0:
            raise ConfigError(f"RECSVC_LOG_SAMPLE={self.log_sample}: a share between 0 and 1")
        if self.page_token_key and len(self.page_token_key.encode()) < 16:
            raise ConfigError("RECSVC_PAGE_TOKEN_KEY: use a random secret of at least 16 bytes")
        if not 60 <= self.page_ttl <= 86400:
            raise ConfigError(f"RECSVC_PAGE_TTL={self.page_ttl}: use 60..86400 seconds")
        if self.max_concurrent_rpcs < 0:
            raise ConfigError(
                f"RECSVC_MAX_CONCURRENT_RPCS={self.max_concurrent_rpcs}: must be >= 0"
            )
        return self

    @property
    def concurrency_limit(self) -> int:
        """Calls a worker holds at once (running or waiting for a thread)."""
        return self.max_concurrent_rpcs or 16 * self.threads

    @property
    def is_loopback(self) -> bool:
        host = self.host.strip("[]")
        return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")
