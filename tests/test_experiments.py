# mypy: disable-error-code="no-untyped-call"
"""Experiments: the file, sticky arms, several versions served at once, attribution.

Real servers on loopback, real Redis, real trained bundles (serving_fixtures). The generated
stubs are unannotated, hence the mypy line above.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_helpers import ADMIN, EVENTS, REC, new_id, rpc_error, sample
from redis_fixtures import new_namespace
from redis_fixtures import serve_config as redis_serve_config
from serving_fixtures import add_copy, trained

from formats import bundle as b
from formats.attribution import parse
from recsvc.cli import main
from recsvc.client import Client
from recsvc.config import ConfigError
from recsvc.experiments import (
    ExperimentsError,
    assign,
    bucket,
    load_experiments,
    parse_experiments,
)
from recsvc.server import Running, start
from recsvc.v1 import recommender_pb2 as pb
from recsvc.v1 import recommender_pb2_grpc as pb_grpc

V1, V2 = "20260101T000000Z-first", "20260102T000000Z-second"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("experiments") / "models"
    add_copy(models, trained(tmp_path_factory, "exact"), V1, publish=True)
    add_copy(models, trained(tmp_path_factory, "other"), V2)
    return models


@pytest.fixture(scope="module")
def customers(model_dir: Path) -> list[str]:
    ids: list[str] = b.load_bundle(model_dir / V1).customer_ids.to_list()
    return ids


def two_arms(salt: str = "s1", treatment: str = V2, **extra: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "experiments": [
            {
                "name": "bigger",
                "salt": salt,
                "arms": [
                    {"name": "control", "model": "current", "traffic": 50},
                    {"name": "treatment", "model": treatment, "traffic": 50, **extra},
                ],
            }
        ],
    }


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def namespace() -> str:
    return new_namespace()


@pytest.fixture
def servers(
    model_dir: Path, redis_url: str, namespace: str
) -> Iterator[Callable[..., tuple[Running, grpc.Channel]]]:
    """Start servers on the session's Redis (this test's namespace); stopped at teardown."""
    started: list[tuple[Running, grpc.Channel]] = []

    def run(models: Path = model_dir, **overrides: Any) -> tuple[Running, grpc.Channel]:
        running = start(redis_serve_config(models, redis_url, namespace, **overrides))
        channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
        started.append((running, channel))
        return running, channel

    yield run
    for running, channel in started:
        channel.close()
        running.stop(grace=1.0)


# -- the file -------------------------------------------------------------------------------


def test_a_good_file_parses(tmp_path: Path) -> None:
    path = tmp_path / "experiments.yaml"
    path.write_text(
        "version: 1\n"
        "experiments:\n"
        "  - name: bigger\n"
        "    salt: s1\n"
        "    rpcs: [RecommendProducts]\n"
        "    arms:\n"
        "      - {name: control, model: current, traffic: 45}\n"
        f"      - {{name: capped, model: {V2}, traffic: 45, options: {{max_per_category: 2}}}}\n"
        "  - name: paused\n"
        "    salt: s2\n"
        "    enabled: false\n"
        "    arms:\n"
        "      - {name: a, model: current, traffic: 50}\n"
        "      - {name: b, model: current, traffic: 50}\n"
    )
    config = load_experiments(path)
    assert [e.name for e in config.experiments] == ["bigger", "paused"]
    assert config.for_rpc("RecommendProducts") is config.experiments[0]
    assert config.for_rpc("RankProducts") is None  # "paused" is disabled
    assert config.versions == [V2]
    assert config.experiments[0].arms[1].options == (("max_per_category", 2),)
    assert len(config.digest) == 64


def test_every_problem_is_reported_with_its_place() -> None:
    doc = {
        "version": 1,
        "experiments": [
            {
                "name": "bad name!",
                "salt": "s",
                "arms": [
                    {"name": "a", "model": "current", "traffic": 70, "option": {}},
                    {"name": "a", "model": "../etc", "traffic": 40},
                ],
            },
            {
                "name": "second",
                "arms": [
                    {"name": "x", "model": "current", "traffic": 50, "options": {"speed": 1}},
                    {"name": "y", "model": "current", "traffic": -5},
                ],
            },
            {
                "name": "third",
                "salt": "t",
                "arms": [{"name": "x", "model": "current", "traffic": 50}],
            },
        ],
    }
    with pytest.raises(ExperimentsError) as info:
        parse_experiments(doc, "exp.json")
    errors = info.value.errors
    text = "\n".join(errors)
    assert "exp.json: experiments[0] (bad name!): name: 'bad name!': use 1 to 40" in text
    assert "arms[0] (a): option: unknown field; did you mean 'options'?" in text
    assert "arms[1] (a): model: '../etc' is not a model version" in text
    assert "experiments[1] (second): salt: missing" in text
    assert "arms[0] (x): options: speed: unknown field" in text
    assert "arms[1] (y): traffic: must not be negative" in text
    assert "experiments[2] (third): arms: expected a list of at least 2 arms" in text


def test_traffic_over_100_and_two_experiments_on_one_rpc_are_refused() -> None:
    over = two_arms()
    over["experiments"][0]["arms"][1]["traffic"] = 60
    with pytest.raises(ExperimentsError, match="traffic adds up to 110%; at most 100"):
        parse_experiments(over)
    twice = two_arms()
    twice["experiments"].append({**twice["experiments"][0], "name": "again"})
    with pytest.raises(ExperimentsError, match="already routed by experiment 'bigger'"):
        parse_experiments(twice)
    with pytest.raises(ExperimentsError, match="version: 2 is not supported"):
        parse_experiments({"version": 2, "experiments": []})


# -- assignment -----------------------------------------------------------------------------


def test_assignment_is_a_stable_hash_of_salt_and_id() -> None:
    config = parse_experiments(two_arms())
    experiment = config.experiments[0]
    units = [f"C{i:07d}" for i in range(2000)]
    arms = Counter(a.name if (a := assign(experiment, u)) else "" for u in units)
    assert 900 <= arms["control"] <= 1100 and arms["control"] + arms["treatment"] == 2000
    assert all(assign(experiment, u) == assign(experiment, u) for u in units[:100])
    assert bucket("s1", "C0000001") == bucket("s1", "C0000001")  # no per-process seed
    assert bucket("s1", "C0000001") != bucket("s2", "C0000001")
    # A share below 100% leaves the rest outside the experiment.
    ramp = parse_experiments(
        {
            "version": 1,
            "experiments": [
                {
                    "name": "ramp",
                    "salt": "r",
                    "arms": [
                        {"name": "control", "model": "current", "traffic": 5},
                        {"name": "new", "model": "current", "traffic": 5},
                    ],
                }
            ],
        }
    ).experiments[0]
    outside = sum(assign(ramp, u) is None for u in units)
    assert 1700 <= outside <= 1900


# -- serving --------------------------------------------------------------------------------


def recommend(stub: Any, customer: str, limit: int = 5, **fields: Any) -> Any:
    return stub.RecommendProducts(
        pb.RecommendProductsRequest(customer_id=customer, limit=limit, **fields),
        metadata=REC,
        timeout=10,
    )


def test_two_arms_on_two_versions_split_customers_stickily_and_report_per_arm(
    model_dir: Path,
    customers: list[str],
    servers: Callable[..., tuple[Running, grpc.Channel]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    redis_url: str,
    namespace: str,
) -> None:
    path = write(tmp_path / "experiments.json", two_arms())
    _, channel = servers(experiments=path)
    stub = pb_grpc.RecommenderStub(channel)
    experiment = load_experiments(path).experiments[0]
    answers: dict[str, Any] = {}
    # The model knows 1,964 customers; new ones are routed (and answered) all the same.
    people = (customers + [f"NEW{i:05d}" for i in range(2000)])[:2000]
    for customer in people:
        reply = recommend(stub, customer)
        expected = assign(experiment, customer)
        assert expected is not None and reply.arm == expected.name
        assert reply.experiment == "bigger"
        assert reply.model_version == (V1 if reply.arm == "control" else V2)
        assert parse(reply.recommendation_id) == parse(f"rp-{'0' * 32}-bigger.{reply.arm}")
        answers[customer] = reply
    shares = Counter(r.arm for r in answers.values())
    assert len(answers) == 2000
    assert 900 <= shares["control"] <= 1100, shares  # 45-55%
    # Sticky: again, on this server and on another one (another worker, or a restart).
    _, other = servers(experiments=path)
    other_stub = pb_grpc.RecommenderStub(other)
    for customer in customers[:200]:
        assert recommend(stub, customer).arm == answers[customer].arm
        assert recommend(other_stub, customer).arm == answers[customer].arm
    # The same customer gets the same list twice (one arm, one model).
    for customer in customers[:20]:
        again = recommend(stub, customer)
        assert [i.product_id for i in again.items] == [
            i.product_id for i in answers[customer].items
        ]

    # Track what the app did with them: the treatment's lists are clicked twice as often.
    rng = np.random.default_rng(3)
    events: list[pb.Event] = []

    def event(kind: Any, customer: str, product: str, rid: str, amount: float = 0.0) -> None:
        events.append(
            pb.Event(
                event_id=new_id(),
                customer_id=customer,
                type=kind,
                product_id=product,
                recommendation_id=rid,
                amount=amount,
            )
        )

    for customer, reply in answers.items():
        rate = 0.2 if reply.arm == "treatment" else 0.1
        for item in reply.items:
            rid = reply.recommendation_id
            event(pb.EVENT_TYPE_REC_IMPRESSION, customer, item.product_id, rid)
            if rng.random() < rate:
                event(pb.EVENT_TYPE_REC_CLICK, customer, item.product_id, rid)
                if rng.random() < 0.3:
                    event(pb.EVENT_TYPE_PURCHASE, customer, item.product_id, rid, 10.0)
    treatment = {"model_version": V2, "experiment": "bigger", "arm": "treatment"}
    control = {"model_version": V1, "experiment": "bigger", "arm": "control"}
    before = sample("recsvc_recommendation_events_total", {**treatment, "event": "impression"})
    revenue = sample("recsvc_recommendation_revenue_total", control)
    events_stub = pb_grpc.EventsStub(channel)
    for at in range(0, len(events), 500):
        tracked = events_stub.TrackEvents(
            pb.TrackEventsRequest(events=events[at : at + 500]), metadata=EVENTS, timeout=30
        )
        assert tracked.accepted == len(tracked.results)
    after = sample("recsvc_recommendation_events_total", {**treatment, "event": "impression"})
    assert after - before == 5 * shares["treatment"]
    assert sample("recsvc_recommendation_events_total", {**treatment, "event": "click"}) > 0
    assert sample("recsvc_recommendation_revenue_total", control) > revenue

    # Export the stream and report per arm, as a table and as JSON.
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("RECSVC_REDIS_NAMESPACE", namespace)
    out = tmp_path / "events"
    assert main(["events", "export", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["report", "--events", str(out), "--by", "arm", "--format", "json"]) == 0
    arms = {r["arm"]: r for r in json.loads(capsys.readouterr().out)["arms"]}
    assert set(arms) == {"control", "treatment"}
    for name, row in arms.items():
        assert row["impressions"] == 5 * shares[name]
        assert row["customers"] == shares[name]
        assert row["ctr_low"] < row["ctr"] < row["ctr_high"]
        assert row["conversion_low"] <= row["conversion"] <= row["conversion_high"]
        assert row["rpi_low"] < row["revenue_per_impression"] < row["rpi_high"]
        assert row["revenue"] == pytest.approx(10.0 * row["purchases"])
    assert arms["control"]["control"] and arms["control"]["ctr_p"] is None
    assert arms["treatment"]["ctr"] > arms["control"]["ctr"]
    assert arms["treatment"]["ctr_p"] < 0.001  # twice the click rate, 5,000 impressions each
    assert arms["treatment"]["warning"] == ""
    assert main(["report", "--events", str(out), "--by", "arm"]) == 0
    table = capsys.readouterr().out
    assert "experiment bigger" in table and "CTR [95% CI]" in table
    line = next(x for x in table.splitlines() if x.strip().startswith("treatment"))
    assert f"{arms['treatment']['ctr']:.2%} [{arms['treatment']['ctr_low']:.2%}," in line


def test_a_reload_naming_an_unknown_version_is_refused_and_the_old_experiments_stay(
    model_dir: Path,
    customers: list[str],
    servers: Callable[..., tuple[Running, grpc.Channel]],
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "experiments.json", two_arms())
    running, channel = servers(experiments=path)
    admin = pb_grpc.AdminStub(channel)
    stub = pb_grpc.RecommenderStub(channel)
    write(path, two_arms(salt="s2", treatment="20990101T000000Z-nowhere"))
    code, details = rpc_error(
        lambda: admin.ReloadExperiments(pb.ReloadExperimentsRequest(), metadata=ADMIN, timeout=30)
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "experiments[0] (bigger): arms[1] (treatment): model:" in details
    assert "20990101T000000Z-nowhere" in details
    assert (
        running.experiments is not None and running.experiments.config.experiments[0].salt == "s1"
    )
    reply = recommend(stub, customers[0])
    assert reply.experiment == "bigger"  # still served by the experiments in force
    # A good file is taken: another salt, and the treatment arm caps categories.
    doc = two_arms(salt="s3", options={"max_per_category": 1})
    write(path, doc)
    done = admin.ReloadExperiments(pb.ReloadExperimentsRequest(), metadata=ADMIN, timeout=60)
    assert done.experiments == 1 and set(done.model_versions) == {V1, V2}
    assert done.config_version == load_experiments(path).digest[:12]
    with Client(f"127.0.0.1:{running.port}", token="all-token") as client:
        assert client.reload_experiments() == (done.config_version, 1, list(done.model_versions))
        rec = client.recommend(customers[0], limit=3)
        assert rec.experiment == "bigger" and rec.arm in ("control", "treatment")
        assert rec.next_page_token  # paging is on (the session's Redis)
        more = client.recommend(customers[0], limit=3, page_token=rec.next_page_token)
        assert not {i.product_id for i in more.items} & {i.product_id for i in rec.items}
    treated = [c for c in customers[:200] if recommend(stub, c).arm == "treatment"]
    assert treated
    for customer in treated[:10]:
        reply = recommend(stub, customer, limit=10)
        categories = Counter(i.category for i in reply.items)
        assert max(categories.values()) == 1  # the arm's option, on V2's engine
        assert reply.model_version == V2


def test_a_bad_file_stops_the_server_at_start(model_dir: Path, tmp_path: Path) -> None:
    path = write(tmp_path / "experiments.json", two_arms(treatment="20990101T000000Z-nowhere"))
    with pytest.raises(ConfigError, match=r"RECSVC_EXPERIMENTS: .*arms\[1\] \(treatment\)"):
        start(redis_serve_config(model_dir, "redis://127.0.0.1:1", "x", experiments=path))


def test_every_worker_follows_the_file_within_the_reload_interval(
    customers: list[str], servers: Callable[..., tuple[Running, grpc.Channel]], tmp_path: Path
) -> None:
    path = write(tmp_path / "experiments.json", two_arms())
    _, channel = servers(experiments=path, reload_interval=0.1)
    stub = pb_grpc.RecommenderStub(channel)
    assert recommend(stub, customers[0]).experiment == "bigger"
    doc = two_arms()
    doc["experiments"][0]["name"] = "renamed"
    write(path, doc)
    deadline = time.monotonic() + 20
    while recommend(stub, customers[0]).experiment != "renamed":
        assert time.monotonic() < deadline, "the file change was not picked up"
        time.sleep(0.05)


def test_similar_products_are_routed_by_product_and_rank_by_customer(
    model_dir: Path,
    customers: list[str],
    servers: Callable[..., tuple[Running, grpc.Channel]],
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "experiments.json", two_arms())
    _, channel = servers(experiments=path)
    stub = pb_grpc.RecommenderStub(channel)
    experiment = load_experiments(path).experiments[0]
    products = b.load_bundle(model_dir / V1).products["product_id"].to_list()
    for product in products[:40]:
        reply = stub.SimilarProducts(
            pb.SimilarProductsRequest(product_id=product, limit=5), metadata=REC, timeout=10
        )
        arm = assign(experiment, product)
        assert arm is not None and reply.arm == arm.name
        assert reply.model_version == (V1 if arm.name == "control" else V2)
        assert reply.recommendation_id.startswith("sp-")
        assert reply.recommendation_id.endswith(f"-bigger.{arm.name}")
    for customer in customers[:40]:
        reply = stub.RankProducts(
            pb.RankProductsRequest(customer_id=customer, product_ids=products[:5]),
            metadata=REC,
            timeout=10,
        )
        arm = assign(experiment, customer)
        assert arm is not None and reply.arm == arm.name
        assert parse(reply.recommendation_id).arm == arm.name


def test_a_published_arm_version_is_not_loaded_twice(
    model_dir: Path, servers: Callable[..., tuple[Running, grpc.Channel]], tmp_path: Path
) -> None:
    models = tmp_path / "models"
    add_copy(models, model_dir / V1, V1, publish=True)
    add_copy(models, model_dir / V2, V2)
    path = write(tmp_path / "experiments.json", two_arms())
    running, _ = servers(models, experiments=path)
    assert running.experiments is not None
    pinned = running.experiments._loaded_engine(V2)
    assert pinned is not None and pinned is not running.store.engine
    b.publish(models, V2)
    running.store.reload()
    assert running.store.engine is pinned  # handed over, not loaded again


def test_the_example_file_is_valid() -> None:
    root = Path(__file__).resolve().parent.parent
    config = load_experiments(root / "examples" / "experiments.yaml")
    assert [e.name for e in config.experiments] == ["retrained-nov", "similar-reranked"]
    assert config.versions == ["20261125T153348Z-502b0c76"]  # loaded once for two arms
