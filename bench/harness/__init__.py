"""The one harness the benchmarks share: import everything from ``bench.harness``.

A benchmark module imports this harness and the project's packages, never another benchmark.
A benchmark split into parts has a driver that alone imports its own parts: bench.events
(events_track, events_foldin, events_bulk), bench.serve (serve_inproc) and bench.serve_rpcs
(serve_rpcs_report).
The submodules only keep each file short:

- report: machine description, date, percentiles and number formats, results files
- host: timed child processes, CPU time of processes, of the host and of other users
- servers: bundles built once and reused, `recsvc serve` in a subprocess, an embedded Redis
- load: gRPC load generator processes, random TrackEvents traffic
- http_load: the load generator's HTTP/1.1 callers (RPCs over HTTP/JSON)
- windows: jobs sent to the load generators, CPU and metrics sampled at the window edges,
  the calls of a phase pooled
"""

from bench.harness.host import (
    Others,
    Timed,
    cpu_seconds,
    host_busy,
    recsvc_bin,
    run_timed,
    run_tree_sampled,
    sleep_until,
)
from bench.harness.http_load import json_bodies
from bench.harness.load import (
    TYPE_SHARES,
    EventMaker,
    EventMix,
    Job,
    LoadGenerators,
    Phase,
    PhaseResult,
    serialize,
    serve_jobs,
)
from bench.harness.report import fmt, ints, machine, median, pct, today, write_results
from bench.harness.servers import (
    EVENTS_TOKEN,
    HEALTH,
    RECOMMEND,
    SERVE_REDIS_DIR,
    SERVE_WORKDIR,
    TOKEN,
    Catalog,
    Redis,
    Server,
    check_reply,
    free_port,
    million_catalog,
    million_world,
    published,
    synth_once,
    train_bundle,
    world_files,
)
from bench.harness.windows import (
    Pooled,
    Sample,
    Window,
    add_load_options,
    pool,
    run_windows,
    sample,
    split_load,
)

__all__ = [
    "EVENTS_TOKEN",
    "HEALTH",
    "RECOMMEND",
    "SERVE_REDIS_DIR",
    "SERVE_WORKDIR",
    "TOKEN",
    "TYPE_SHARES",
    "Catalog",
    "EventMaker",
    "EventMix",
    "Job",
    "LoadGenerators",
    "Others",
    "Phase",
    "PhaseResult",
    "Pooled",
    "Redis",
    "Sample",
    "Server",
    "Timed",
    "Window",
    "add_load_options",
    "check_reply",
    "cpu_seconds",
    "fmt",
    "free_port",
    "host_busy",
    "ints",
    "json_bodies",
    "machine",
    "median",
    "million_catalog",
    "million_world",
    "pct",
    "pool",
    "published",
    "recsvc_bin",
    "run_timed",
    "run_tree_sampled",
    "run_windows",
    "sample",
    "serialize",
    "serve_jobs",
    "sleep_until",
    "split_load",
    "synth_once",
    "today",
    "train_bundle",
    "world_files",
    "write_results",
]
