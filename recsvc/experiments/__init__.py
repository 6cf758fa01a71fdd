"""A/B experiments: arms serving different model versions (or engine options) side by side.

- ``spec``: the experiments file (YAML or JSON), validated with every problem's place
- ``assignment``: a customer's arm, a stable hash of the experiment's salt and the id
- ``serving``: ``Experiments``, the file in force in a worker, the engines of its arms,
  ``route`` (which engine answers a call) and ``labels`` (metrics of tracked events)

The recommendation_id of a routed call carries experiment and arm (formats/attribution.py);
`recsvc report --by arm` reads them back. File format and behaviour: docs/api.md.
"""

from recsvc.experiments.assignment import assign, bucket
from recsvc.experiments.serving import Experiments, Route
from recsvc.experiments.spec import (
    ARM_OPTIONS,
    CURRENT,
    NO_EXPERIMENTS,
    RPCS,
    Arm,
    Experiment,
    ExperimentsError,
    ExperimentsFile,
    load_experiments,
    parse_experiments,
)

__all__ = [
    "ARM_OPTIONS",
    "CURRENT",
    "NO_EXPERIMENTS",
    "RPCS",
    "Arm",
    "Experiment",
    "Experiments",
    "ExperimentsError",
    "ExperimentsFile",
    "Route",
    "assign",
    "bucket",
    "load_experiments",
    "parse_experiments",
]
