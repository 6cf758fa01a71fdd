"""The experiments file: what an experiment is, and reading and validating the file.

YAML or JSON, version 1 (docs/api.md, "Experiments"; examples/experiments.yaml)::

    version: 1
    experiments:
      - name: als-bigger
        salt: 2026-11-a          # a customer's arm is a stable hash of salt and customer id
        rpcs: [RecommendProducts, RankProducts]   # default: all three product RPCs
        arms:
          - name: control        # `recsvc report --by arm` tests every arm against "control"
            model: current       # the version MODEL_DIR/CURRENT names, following publishes
            traffic: 50          # percent of customers
          - name: bigger
            model: 20261125T153348Z-502b0c76
            traffic: 50
            options: {max_per_category: 3}

Every problem is reported with its place (file, experiment, arm, field), all in one pass.
Whether each named model version exists and loads is checked by whoever serves them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from formats.attribution import NAME
from formats.bundle import version_problem
from formats.types import SOURCES
from recsvc.offers.fields import (
    Fields,
    ListedErrors,
    document_version,
    listing,
    read_document,
    show,
)

SUPPORTED_VERSIONS: Final = (1,)
CURRENT: Final = "current"  # an arm's model: whatever MODEL_DIR/CURRENT names
# The RPCs an experiment can route, by name (the sources of formats.types.SOURCES).
RPCS: Final = ("RecommendProducts", "SimilarProducts", "RankProducts")
RPC_SOURCE: Final = {name: code for code, name in SOURCES.items() if name in RPCS}
# Engine settings an arm may change (recsvc.engine.EngineConfig fields): name -> (kind, help).
ARM_OPTIONS: Final = {
    "max_per_category": ("integer", "at most this many items per category (0 = no cap)"),
    "fold_in": ("boolean", "re-solve customer vectors from real-time events"),
    "overfetch": ("integer", "ask the index for this many times the items needed (1..64)"),
}
_TOP_KEYS: Final = ("version", "experiments")
_EXPERIMENT_KEYS: Final = ("name", "salt", "rpcs", "enabled", "arms", "description")
_ARM_KEYS: Final = ("name", "model", "traffic", "options")


class ExperimentsError(ListedErrors):
    """The experiments file cannot be used; ``errors`` lists every problem, one a line."""


@dataclass(frozen=True)
class Arm:
    name: str
    model: str  # a bundle version, or CURRENT
    traffic: float  # percent of the experiment's units
    options: tuple[tuple[str, int | bool], ...] = ()  # sorted (name, value) pairs

    @property
    def follows_current(self) -> bool:
        return self.model == CURRENT


@dataclass(frozen=True)
class Experiment:
    name: str
    salt: str
    arms: tuple[Arm, ...]
    rpcs: tuple[str, ...] = RPCS
    enabled: bool = True
    description: str = ""

    def arm(self, name: str) -> Arm | None:
        return next((a for a in self.arms if a.name == name), None)


@dataclass(frozen=True)
class ExperimentsFile:
    version: int
    experiments: tuple[Experiment, ...]
    source: str = ""
    digest: str = ""  # sha256 of the file's bytes

    def for_rpc(self, rpc: str) -> Experiment | None:
        """The enabled experiment routing ``rpc`` (validation allows at most one)."""
        return next((e for e in self.experiments if e.enabled and rpc in e.rpcs), None)

    def experiment(self, name: str) -> Experiment | None:
        return next((e for e in self.experiments if e.name == name), None)

    @property
    def versions(self) -> list[str]:
        """Model versions named by enabled arms (not CURRENT), each once, in file order."""
        named = (a.model for e in self.experiments if e.enabled for a in e.arms)
        return list(dict.fromkeys(v for v in named if v != CURRENT))


NO_EXPERIMENTS = ExperimentsFile(version=1, experiments=())


def load_experiments(path: str | Path) -> ExperimentsFile:
    """Read and validate an experiments file (YAML or JSON by extension)."""
    path = Path(path)
    data, digest = read_document(path, ExperimentsError)
    return parse_experiments(data, str(path), digest)


def parse_experiments(
    data: object, source: str = "<experiments>", digest: str = ""
) -> ExperimentsFile:
    """Validate an already-parsed experiments document."""
    # A document of another version may mean anything: that stops here.
    data, version = document_version(
        data, source, SUPPORTED_VERSIONS, "experiments", ExperimentsError
    )
    errors: list[str] = []
    Fields(f"{source}: ", data, errors).reject_unknown(_TOP_KEYS)
    raw = data.get("experiments")
    experiments: list[Experiment] = []
    if raw is None:
        raw = []  # "experiments:" with nothing under it: none
    if not isinstance(raw, list):
        errors.append(f"{source}: experiments: expected a list, got {show(raw)}")
        raw = []
    names: dict[str, int] = {}
    routed: dict[str, str] = {}  # rpc -> the enabled experiment routing it
    for i, item in enumerate(raw):
        experiment = _parse_experiment(source, i, item, errors)
        if experiment is None:
            continue
        where = f"{source}: experiments[{i}] ({experiment.name})"
        if experiment.name in names:
            errors.append(f"{where}: name: duplicate of experiments[{names[experiment.name]}]")
            continue
        names[experiment.name] = i
        for rpc in experiment.rpcs if experiment.enabled else ():
            if rpc in routed:
                errors.append(
                    f"{where}: rpcs: {rpc} is already routed by experiment {routed[rpc]!r}; "
                    "a call can be in one experiment only (disable one, or split the rpcs)"
                )
            routed.setdefault(rpc, experiment.name)
        experiments.append(experiment)
    if errors:
        raise ExperimentsError(errors)
    return ExperimentsFile(version, tuple(experiments), source, digest)


def _name(f: Fields, key: str) -> str:
    value = f.string(key, required=True)
    if value and not NAME.fullmatch(value):
        f.error(key, f"{value!r}: use 1 to 40 letters, digits, '_' or '-'")
    return value


def _parse_experiment(source: str, i: int, item: object, errors: list[str]) -> Experiment | None:
    if not isinstance(item, dict):
        errors.append(f"{source}: experiments[{i}]: expected a mapping, got {show(item)}")
        return None
    label = item.get("name") if isinstance(item.get("name"), str) else "no name"
    before = len(errors)
    f = Fields(f"{source}: experiments[{i}] ({label}): ", item, errors)
    f.reject_unknown(_EXPERIMENT_KEYS)
    name = _name(f, "name")
    salt = f.string("salt", required=True, max_length=200)
    rpcs = f.strings("rpcs", RPCS) if "rpcs" in item else RPCS
    if "rpcs" in item and not rpcs:
        f.error("rpcs", f"empty; list some of {listing(RPCS)} or omit it for all")
    enabled = f.boolean("enabled") if "enabled" in item else True
    description = f.string("description")
    raw_arms = item.get("arms")
    arms: list[Arm] = []
    if not isinstance(raw_arms, list) or len(raw_arms) < 2:
        f.error("arms", f"expected a list of at least 2 arms, got {show(raw_arms)}")
    else:
        seen: set[str] = set()
        for j, raw_arm in enumerate(raw_arms):
            arm = _parse_arm(f.where, j, raw_arm, errors)
            if arm is None:
                continue
            if arm.name in seen:
                errors.append(f"{f.where}arms[{j}] ({arm.name}): name: duplicate arm name")
            seen.add(arm.name)
            arms.append(arm)
        total = sum(a.traffic for a in arms)
        if len(arms) == len(raw_arms) and total > 100 + 1e-9:
            f.error("arms", f"traffic adds up to {total:g}%; at most 100")
    if len(errors) > before:
        return None
    return Experiment(name, salt, tuple(arms), tuple(rpcs), enabled, description)


def _parse_arm(where: str, j: int, item: object, errors: list[str]) -> Arm | None:
    if not isinstance(item, dict):
        errors.append(f"{where}arms[{j}]: expected a mapping, got {show(item)}")
        return None
    label = item.get("name") if isinstance(item.get("name"), str) else "no name"
    before = len(errors)
    f = Fields(f"{where}arms[{j}] ({label}): ", item, errors)
    f.reject_unknown(_ARM_KEYS)
    name = _name(f, "name")
    model = f.string("model", required=True)
    if model and model != CURRENT:
        problem = version_problem(model)
        if problem:
            f.error("model", f"{problem}; or {CURRENT!r} for the published one")
    traffic = f.number("traffic", required=True, positive=True)
    if traffic is not None and traffic > 100:
        f.error("traffic", f"{traffic:g} is a percentage of customers: at most 100")
    options = _parse_options(f, item.get("options"))
    if len(errors) > before:
        return None
    return Arm(name, model, traffic or 0.0, options)


def _parse_options(f: Fields, raw: Any) -> tuple[tuple[str, int | bool], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        f.error("options", f"expected a mapping of engine options, got {show(raw)}")
        return ()
    options = Fields(f"{f.where}options: ", raw, f.errors)
    options.reject_unknown(tuple(ARM_OPTIONS))
    out: list[tuple[str, int | bool]] = []
    for key in raw:
        if key not in ARM_OPTIONS:
            continue
        kind, _ = ARM_OPTIONS[key]
        if kind == "boolean":
            out.append((key, options.boolean(key)))
            continue
        number = options.number(key, required=True, integer=True)
        if number is None:
            continue
        if key == "overfetch" and not 1 <= number <= 64:
            options.error(key, f"{number:g} is outside 1..64")
        out.append((key, int(number)))
    return tuple(sorted(out))
