"""`python -m recsvc.cli`, used by tests and benchmarks that run the CLI in a subprocess."""

import sys

from recsvc.cli import main

sys.exit(main())
