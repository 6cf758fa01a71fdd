"""The one harness the benchmarks share: import everything from ``bench.harness``.

A benchmark module imports this harness and the project's packages, never another benchmark
(a benchmark split into parts, such as bench.events, has a driver that imports its own parts).
The submodules only keep each file short:

- report: machine description, date, results files
- host: timed child processes
"""

from bench.harness.host import Timed, run_timed
from bench.harness.report import machine, today, write_results

__all__ = ["Timed", "machine", "run_timed", "today", "write_results"]
