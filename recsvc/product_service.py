"""RecommendProducts, SimilarProducts and RankProducts around the engine: which engine
answers (an experiment arm, or the published model), the customer's real-time activity, and
next pages. No gRPC in here.

Paging: a page excludes every product shown under its token (the set lives in the feature
store, ``feature_store.pages``, shared by all workers and replicas), so page n+1 continues
the same ranking without a repeat. A list ends (no next_page_token) when a page comes back
short or the list has shown ``PAGE_MAX`` products. While the feature store is down, answers
carry no next_page_token, and a page_token cannot be continued (UNAVAILABLE).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from redis.exceptions import RedisError

from feature_store import pages
from feature_store.keys import PAGE_MAX
from formats.attribution import with_arm
from formats.errors import InvalidRequest, Unavailable
from formats.types import Context, Filter, Recommendation
from recsvc.engine.slots import Levers
from recsvc.experiments import Experiments, Route
from recsvc.paging import START_AGAIN, PageTokens, fits_in_token, request_digest
from recsvc.realtime import Realtime

log = logging.getLogger(__name__)


def _tagged(rec: Recommendation, route: Route) -> Recommendation:
    if not route.experiment:
        return rec
    return replace(
        rec,
        recommendation_id=with_arm(rec.recommendation_id, route.experiment, route.arm),
        experiment=route.experiment,
        arm=route.arm,
    )


class ProductService:
    def __init__(
        self, experiments: Experiments, realtime: Realtime, tokens: PageTokens | None = None
    ) -> None:
        self.experiments = experiments
        self.realtime = realtime
        self.tokens = tokens  # None: paging is off (no server key)

    def recommend(
        self,
        customer_id: str,
        limit: int = 0,
        filter: Filter | None = None,
        context: Context | None = None,
        page_token: str = "",
        levers: Levers | None = None,
    ) -> Recommendation:
        """``levers``: promotions and trending products to place (recsvc.engine.slots)."""
        filter = filter or Filter()
        context = context or Context()
        route = self.experiments.route("RecommendProducts", customer_id)
        engine = route.engine
        request = request_digest(customer_id, filter, context)
        session, page, shown = self._resume(page_token, request)
        activity = self.realtime.activity(engine, customer_id)
        asked = replace(filter, exclude_product_ids=filter.exclude_product_ids | shown)
        rec = engine.recommend(customer_id, limit, asked, context, activity, levers)
        token = self._next(request, session, page, shown, rec, limit or engine.config.default_limit)
        if token:
            rec = replace(rec, next_page_token=token)
        return _tagged(rec, route)

    def similar(
        self, product_id: str, limit: int = 0, filter: Filter | None = None
    ) -> Recommendation:
        # No customer here: the unit of the experiment is the product.
        route = self.experiments.route("SimilarProducts", product_id)
        self.realtime.sync_catalog(route.engine)
        return _tagged(route.engine.similar(product_id, limit, filter), route)

    def rank(self, customer_id: str, product_ids: list[str]) -> Recommendation:
        route = self.experiments.route("RankProducts", customer_id)
        activity = self.realtime.activity(route.engine, customer_id)
        return _tagged(route.engine.rank(customer_id, product_ids, activity), route)

    # -- paging ---------------------------------------------------------------------------
    def _resume(self, token: str, request: bytes) -> tuple[str, int, frozenset[str]]:
        """(session, page number, products shown so far) of ``token``; a new list without."""
        if not token:
            return "", 1, frozenset()
        if self.tokens is None:
            raise InvalidRequest(
                "paging is off on this server (it has no RECSVC_PAGE_TOKEN_KEY); "
                "send the request without page_token"
            )
        page = self.tokens.open(token, request)
        if page.shown:  # the second page: the first one's products came in the token
            return page.session, page.page, frozenset(page.shown)
        store = self.realtime.store
        if store is None or not self.realtime.available:
            raise Unavailable(
                "the feature store, which keeps what earlier pages showed, cannot be reached; "
                "retry, or start again without page_token"
            )
        try:
            shown = pages.shown(store, page.session)
        except RedisError as exc:
            raise Unavailable(
                f"the feature store cannot be read ({exc}); retry, or start again without "
                "page_token"
            ) from None
        if not shown:  # its TTL passed (a token's expiry is checked first: Redis lost it)
            raise InvalidRequest(f"page_token expired; {START_AGAIN}")
        return page.session, page.page, shown

    def _next(
        self,
        request: bytes,
        session: str,
        page: int,
        shown: frozenset[str],
        rec: Recommendation,
        limit: int,
    ) -> str:
        """The token of the page after ``rec``, or "" when the list ends here. The first
        page's products travel in the token (nothing is written for an answer nobody pages
        through); from the second page on, everything shown is kept in the feature store."""
        tokens, store = self.tokens, self.realtime.store
        if tokens is None or store is None or not self.realtime.available:
            return ""
        ids = [i.product_id for i in rec.items]
        if len(ids) < limit or len(shown) + len(ids) >= PAGE_MAX:
            return ""  # nothing further, or the list is as long as lists get
        if page == 1 and fits_in_token(tuple(ids)):
            return tokens.issue(tokens.new_session(), 2, request, shown=tuple(ids))
        session = session or tokens.new_session()
        # The second page records the first one's products too (they came in its token).
        record = [*shown, *ids] if page == 2 else ids
        try:
            pages.add_shown(store, session, record, tokens.ttl_s)
        except RedisError as exc:
            log.warning("no next page for this answer: cannot record what it shows (%s)", exc)
            return ""
        return tokens.issue(session, page + 1, request)
