"""The contract every training.models.Model keeps, as implicit's RecommenderBaseTestMixin.

:class:`ModelContract` holds the tests; each model class has one concrete ``Test*`` class that
says how to build the model, whether it is personalized and how to read its item
similarities. A Model subclass without such a class fails
``test_every_model_class_has_a_contract``.

The world is two disjoint blocks: 12 customers buy block A (items 0-5), 6 buy block B
(items 6-11), each customer 3 neighbouring items of their block (so A's items are twice as
popular as B's), one customer has no history and item 12 nobody bought.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import pytest
from scipy.sparse import csr_matrix

import training
from training.item2item import Item2ItemModel, Item2ItemParams
from training.item2vec import Item2VecModel, Item2VecParams
from training.metrics import mask_seen, recommend_batch
from training.models import ALSModel, ALSParams, ItemKNNModel, Model, PopularityModel
from training.spark import DEFAULTS as SPARK_DEFAULTS
from training.spark import SparkALSModel

BLOCKS = (np.arange(0, 6), np.arange(6, 12))  # A, B
NOBODYS = 12  # the item nobody interacted with
N_ITEMS = 13


@dataclass(frozen=True)
class World:
    user_items: csr_matrix
    block: list[int | None]  # each customer's block, an index into BLOCKS (None: no history)

    @property
    def n_users(self) -> int:
        return int(self.user_items.shape[0])

    @property
    def users(self) -> np.ndarray:
        return np.arange(self.n_users)

    def seen(self, user: int) -> set[int]:
        row = self.user_items[user]
        return {int(i) for i in row.indices}

    @property
    def empty_user(self) -> int:
        return next(u for u, b in enumerate(self.block) if b is None)


def two_blocks() -> World:
    """A fresh copy each call (a test may check that nothing modifies it)."""
    rows: list[list[int]] = []
    block: list[int | None] = []
    for b, customers in ((0, 12), (1, 6)):
        ids = BLOCKS[b]
        for u in range(customers):
            rows.append([int(ids[(u + k) % len(ids)]) for k in range(3)])
            block.append(b)
    rows.append([])
    block.append(None)
    dense = np.zeros((len(rows), N_ITEMS), dtype=np.float32)
    for u, items in enumerate(rows):
        dense[u, items] = 1.0
    return World(csr_matrix(dense), block)


def cosine(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.maximum(norms, 1e-12)  # a zero vector (no data) stays zero
    similarity: np.ndarray = unit @ unit.T
    return similarity


class ModelContract:
    """Mixed into one ``Test*`` class per model class (its name does not start with Test, so
    pytest collects the tests only through those)."""

    model_class: ClassVar[type[Model]]
    # Personalized: a customer's own block ranks first. Not: one ranking for every customer,
    # the more popular block first.
    personalized: ClassVar[bool]

    def make_model(self, seed: int = 0) -> Model:
        raise NotImplementedError

    def item_similarity(self, model: Model) -> np.ndarray | None:
        """Dense items x items similarities where the model offers them (item vectors or a
        neighbour table), else None."""
        return None

    def fit(self, world: World, seed: int = 0) -> Model:
        model = self.make_model(seed)
        assert type(model) is self.model_class
        model.fit(world.user_items, progress=False)
        return model

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls) -> Model:
        """Fitted once per class for the tests that only score (scoring must not change it)."""
        return cls().fit(two_blocks())

    def test_has_the_name_training_reports_it_under(self) -> None:
        assert isinstance(self.model_class.name, str) and self.model_class.name
        assert self.make_model().name == self.model_class.name

    def test_fit_without_progress_prints_nothing(self, capfd: pytest.CaptureFixture[str]) -> None:
        self.fit(two_blocks())
        assert capfd.readouterr() == ("", "")

    def test_fit_and_score_leave_the_matrix_alone(self) -> None:
        world = two_blocks()
        before = world.user_items.copy()
        model = self.fit(world)
        model.score(world.users, world.user_items)
        after = world.user_items
        for name in ("data", "indices", "indptr"):
            np.testing.assert_array_equal(getattr(after, name), getattr(before, name), name)
        assert after.dtype == before.dtype

    def test_scores_are_float32_one_row_per_user_one_column_per_item(self, fitted: Model) -> None:
        world = two_blocks()
        scores = fitted.score(world.users, world.user_items)
        assert isinstance(scores, np.ndarray)
        assert scores.shape == (world.n_users, N_ITEMS) and scores.dtype == np.float32
        assert np.isfinite(scores).all()

    def test_scores_rows_for_the_users_asked_in_their_order(self, fitted: Model) -> None:
        world = two_blocks()
        every = fitted.score(world.users, world.user_items)
        some = np.array([13, 0, 13, world.empty_user])
        chosen = fitted.score(some, world.user_items)
        assert chosen.dtype == np.float32
        np.testing.assert_array_equal(chosen, every[some])
        assert fitted.score(np.array([], dtype=np.int64), world.user_items).shape == (0, N_ITEMS)

    def test_seen_items_can_be_masked(self, fitted: Model) -> None:
        world = two_blocks()
        top = recommend_batch(
            lambda u: fitted.score(u, world.user_items), world.user_items, world.users, N_ITEMS
        )
        for user in world.users:
            seen = world.seen(user)
            ranked = [int(i) for i in top[user] if i >= 0]
            assert set(ranked) == set(range(N_ITEMS)) - seen, user
            assert len(ranked) == len(set(ranked)) == N_ITEMS - len(seen)
        # Masking wrote -inf into that call's scores only: they are not the model's state.
        assert np.isfinite(fitted.score(world.users, world.user_items)).all()

    def test_same_seed_and_params_same_scores(self) -> None:
        world = two_blocks()
        first = self.fit(world, seed=3).score(world.users, world.user_items)
        again = self.fit(world, seed=3).score(world.users, world.user_items)
        np.testing.assert_array_equal(first, again)

    def test_a_refit_forgets_the_previous_data(self) -> None:
        world = two_blocks()
        mirrored = csr_matrix(world.user_items.toarray()[:, ::-1])  # the blocks swap items
        refit = self.fit(world, seed=1)
        refit.fit(mirrored, progress=False)
        fresh = self.fit(World(mirrored, world.block), seed=1)
        np.testing.assert_array_equal(
            refit.score(world.users, mirrored), fresh.score(world.users, mirrored)
        )

    def test_a_user_without_history_gets_a_full_ranking(self, fitted: Model) -> None:
        world = two_blocks()
        user = np.array([world.empty_user])
        scores = fitted.score(user, world.user_items)
        assert scores.shape == (1, N_ITEMS) and np.isfinite(scores).all()
        top = recommend_batch(
            lambda u: fitted.score(u, world.user_items), world.user_items, user, 5
        )
        assert len(set(top[0].tolist())) == 5 and top.min() >= 0

    def test_learns_the_obvious_pattern(self, fitted: Model) -> None:
        world = two_blocks()
        scores = fitted.score(world.users, world.user_items)
        if not self.personalized:
            np.testing.assert_array_equal(scores, np.tile(scores[0], (world.n_users, 1)))
        mask_seen(scores, world.user_items, world.users)
        for user, block in enumerate(world.block):
            if block is None:
                continue
            first = block if self.personalized else 0  # A is the more popular block
            unseen_first = [i for i in BLOCKS[first] if i not in world.seen(user)]
            worst_first = scores[user, unseen_first].min()
            assert worst_first > scores[user, BLOCKS[1 - first]].max(), (user, scores[user])
            # Nobody's item has no evidence for it: never above the expected block.
            assert worst_first > scores[user, NOBODYS], (user, scores[user])

    def test_similar_items_stay_in_their_block(self, fitted: Model) -> None:
        similarity = self.item_similarity(fitted)
        if similarity is None:
            # Declared without similarities: the model must not offer any a caller could use.
            assert not hasattr(fitted, "item_factors") and not hasattr(fitted, "similarity")
            return
        assert similarity.shape == (N_ITEMS, N_ITEMS) and np.isfinite(similarity).all()
        for block, other in (BLOCKS, BLOCKS[::-1]):
            for item in block:
                mates = [i for i in block if i != item]
                assert similarity[item, mates].max() > similarity[item, other].max(), item


class TestALSModelContract(ModelContract):
    model_class = ALSModel
    personalized = True

    def make_model(self, seed: int = 0) -> ALSModel:
        # Production regularization and alpha; few factors and iterations for speed.
        return ALSModel(ALSParams(factors=8, iterations=10, random_state=seed))

    def item_similarity(self, model: Model) -> np.ndarray:
        assert isinstance(model, ALSModel)
        return cosine(model.item_factors)

    def test_factors_cover_every_user_and_item(self, fitted: Model) -> None:
        # The bundle stores them and the serving index is built from the item factors.
        assert isinstance(fitted, ALSModel)
        for factors, rows in ((fitted.user_factors, 19), (fitted.item_factors, N_ITEMS)):
            assert factors.shape == (rows, 8) and factors.dtype == np.float32
            assert factors.flags.c_contiguous and np.isfinite(factors).all()


class TestPopularityModelContract(ModelContract):
    model_class = PopularityModel
    personalized = False

    def make_model(self, seed: int = 0) -> PopularityModel:
        return PopularityModel()


class TestItemKNNModelContract(ModelContract):
    model_class = ItemKNNModel
    personalized = True

    def make_model(self, seed: int = 0) -> ItemKNNModel:
        return ItemKNNModel()

    def item_similarity(self, model: Model) -> np.ndarray:
        assert isinstance(model, ItemKNNModel)
        similarity: np.ndarray = model.similarity.toarray()
        np.fill_diagonal(similarity, 0.0)  # an item is not its own neighbour
        return similarity


class TestItem2ItemModelContract(ModelContract):
    """EASE neighbours (the catalog is small); TestItem2ItemCosineContract covers the cosine
    neighbours of large catalogs."""

    model_class = Item2ItemModel
    personalized = True
    params = Item2ItemParams(kind="ease", l2=0.5)

    def make_model(self, seed: int = 0) -> Item2ItemModel:
        return Item2ItemModel(self.params)

    def item_similarity(self, model: Model) -> np.ndarray:
        assert isinstance(model, Item2ItemModel)
        similarity: np.ndarray = model.neighbours.toarray()
        return similarity

    def test_neighbours_are_sparse_rows_without_the_product_itself(self, fitted: Model) -> None:
        assert isinstance(fitted, Item2ItemModel)
        table = fitted.neighbours
        assert table.shape == (N_ITEMS, N_ITEMS) and table.dtype == np.float32
        assert table.has_canonical_format
        assert not table.diagonal().any()
        # Each product keeps at most `neighbours` entries.
        pruned = Item2ItemModel(replace(self.params, neighbours=2))
        pruned.fit(two_blocks().user_items)
        assert np.diff(pruned.neighbours.indptr).max() <= 2


class TestItem2ItemCosineContract(TestItem2ItemModelContract):
    params = Item2ItemParams(kind="cosine")


class TestItem2VecModelContract(ModelContract):
    model_class = Item2VecModel
    personalized = True

    def make_model(self, seed: int = 0) -> Item2VecModel:
        # Tiny data: many epochs, every product kept (no down-sampling), a whole basket per window.
        return Item2VecModel(
            Item2VecParams(dimensions=8, window=3, epochs=200, sample=0.0, seed=seed)
        )

    def item_similarity(self, model: Model) -> np.ndarray:
        assert isinstance(model, Item2VecModel)
        return cosine(model.item_vectors)

    def test_vectors_are_unit_rows_and_zero_for_products_never_met(self, fitted: Model) -> None:
        assert isinstance(fitted, Item2VecModel)
        norms = np.linalg.norm(fitted.item_vectors, axis=1)
        np.testing.assert_allclose(norms[:NOBODYS], 1.0, rtol=1e-5)
        assert norms[NOBODYS] == 0.0


# -- every model class has a contract -------------------------------------------------------


def concrete_subclasses(base: type) -> set[type]:
    """Every non-abstract class below ``base``, at any depth."""
    found: set[type] = set()
    subclasses: list[type] = base.__subclasses__()
    for sub in subclasses:
        found |= concrete_subclasses(sub)
        if not inspect.isabstract(sub):
            found.add(sub)
    return found


def test_every_model_class_has_a_contract() -> None:
    # Import all of training, so a Model subclass in any of its modules is seen.
    for module in pkgutil.walk_packages(training.__path__, "training."):
        importlib.import_module(module.name)
    models = {
        cls
        for cls in concrete_subclasses(Model)
        if issubclass(cls, Model) and cls.__module__.split(".")[0] == "training"
    }
    covered = {
        vars(cls)["model_class"]
        for cls in concrete_subclasses(ModelContract)
        if "model_class" in vars(cls)
    }
    missing = sorted(cls.__qualname__ for cls in models - covered)
    assert not missing, f"no contract test class (a ModelContract subclass) for {missing}"
    assert {ALSModel, PopularityModel, ItemKNNModel, Item2ItemModel, Item2VecModel} <= covered
    # Training reports metrics by model name. ALS fit by another engine (SparkALSModel) is
    # still "als": a run has one engine, and manifests compare across engines by that name.
    engines = {cls for cls in models if issubclass(cls, ALSModel) and cls is not ALSModel}
    assert {cls.name for cls in engines} <= {"als"}
    names = [cls.name for cls in models - engines]
    assert len(set(names)) == len(names), names


def test_concrete_subclasses_looks_below_abstract_classes() -> None:
    class Base(ABC):
        @abstractmethod
        def f(self) -> None: ...

    class Middle(Base):  # still abstract
        pass

    class Leaf(Middle):
        def f(self) -> None:
            pass

    class LeafOfLeaf(Leaf):
        pass

    assert concrete_subclasses(Base) == {Leaf, LeafOfLeaf}


class TestSparkALSModelContract(ModelContract):
    """Spark MLlib's ALS (local mode, one session for the class): the same contract."""

    model_class = SparkALSModel
    personalized = True
    session: ClassVar[Any] = None

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def spark(cls) -> Iterator[None]:
        from training.spark import SparkSettings, spark_session

        # C1 only: these short JVM jobs finish sooner without the optimizing compiler.
        quick = {"spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1"}
        settings = SparkSettings(master="local[1]", progress=False, conf=quick)
        with spark_session(settings) as session:
            cls.session = session
            yield
        cls.session = None

    def make_model(self, seed: int = 0) -> SparkALSModel:
        params = replace(SPARK_DEFAULTS, factors=8, iterations=5, random_state=seed)
        return SparkALSModel(params, type(self).session, blocks=1)

    def item_similarity(self, model: Model) -> np.ndarray:
        assert isinstance(model, SparkALSModel)
        return cosine(model.item_factors)
