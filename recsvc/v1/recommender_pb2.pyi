import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Surface(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SURFACE_UNSPECIFIED: _ClassVar[Surface]
    SURFACE_HOME: _ClassVar[Surface]
    SURFACE_PRODUCT_PAGE: _ClassVar[Surface]
    SURFACE_CART: _ClassVar[Surface]
    SURFACE_CHECKOUT: _ClassVar[Surface]

class SlotKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SLOT_KIND_UNSPECIFIED: _ClassVar[SlotKind]
    SLOT_KIND_PERSONALIZED: _ClassVar[SlotKind]
    SLOT_KIND_EXPLORATION: _ClassVar[SlotKind]
    SLOT_KIND_PROMOTION: _ClassVar[SlotKind]
    SLOT_KIND_POPULAR: _ClassVar[SlotKind]
    SLOT_KIND_TRENDING: _ClassVar[SlotKind]
    SLOT_KIND_CONTENT: _ClassVar[SlotKind]
    SLOT_KIND_SIMILAR: _ClassVar[SlotKind]

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_VIEW: _ClassVar[EventType]
    EVENT_TYPE_CLICK: _ClassVar[EventType]
    EVENT_TYPE_ADD_TO_CART: _ClassVar[EventType]
    EVENT_TYPE_PURCHASE: _ClassVar[EventType]
    EVENT_TYPE_REC_IMPRESSION: _ClassVar[EventType]
    EVENT_TYPE_REC_CLICK: _ClassVar[EventType]
    EVENT_TYPE_OFFER_IMPRESSION: _ClassVar[EventType]
    EVENT_TYPE_OFFER_CLICK: _ClassVar[EventType]
    EVENT_TYPE_OFFER_REDEEMED: _ClassVar[EventType]

class EventStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_STATUS_UNSPECIFIED: _ClassVar[EventStatus]
    EVENT_STATUS_ACCEPTED: _ClassVar[EventStatus]
    EVENT_STATUS_DUPLICATE: _ClassVar[EventStatus]
    EVENT_STATUS_REJECTED: _ClassVar[EventStatus]
SURFACE_UNSPECIFIED: Surface
SURFACE_HOME: Surface
SURFACE_PRODUCT_PAGE: Surface
SURFACE_CART: Surface
SURFACE_CHECKOUT: Surface
SLOT_KIND_UNSPECIFIED: SlotKind
SLOT_KIND_PERSONALIZED: SlotKind
SLOT_KIND_EXPLORATION: SlotKind
SLOT_KIND_PROMOTION: SlotKind
SLOT_KIND_POPULAR: SlotKind
SLOT_KIND_TRENDING: SlotKind
SLOT_KIND_CONTENT: SlotKind
SLOT_KIND_SIMILAR: SlotKind
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_VIEW: EventType
EVENT_TYPE_CLICK: EventType
EVENT_TYPE_ADD_TO_CART: EventType
EVENT_TYPE_PURCHASE: EventType
EVENT_TYPE_REC_IMPRESSION: EventType
EVENT_TYPE_REC_CLICK: EventType
EVENT_TYPE_OFFER_IMPRESSION: EventType
EVENT_TYPE_OFFER_CLICK: EventType
EVENT_TYPE_OFFER_REDEEMED: EventType
EVENT_STATUS_UNSPECIFIED: EventStatus
EVENT_STATUS_ACCEPTED: EventStatus
EVENT_STATUS_DUPLICATE: EventStatus
EVENT_STATUS_REJECTED: EventStatus

class Filter(_message.Message):
    __slots__ = ("include_categories", "exclude_categories", "exclude_product_ids", "in_stock_only", "min_price", "max_price", "include_purchased", "max_per_category", "attributes")
    INCLUDE_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_PRODUCT_IDS_FIELD_NUMBER: _ClassVar[int]
    IN_STOCK_ONLY_FIELD_NUMBER: _ClassVar[int]
    MIN_PRICE_FIELD_NUMBER: _ClassVar[int]
    MAX_PRICE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PURCHASED_FIELD_NUMBER: _ClassVar[int]
    MAX_PER_CATEGORY_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    include_categories: _containers.RepeatedScalarFieldContainer[str]
    exclude_categories: _containers.RepeatedScalarFieldContainer[str]
    exclude_product_ids: _containers.RepeatedScalarFieldContainer[str]
    in_stock_only: bool
    min_price: float
    max_price: float
    include_purchased: bool
    max_per_category: int
    attributes: _containers.RepeatedCompositeFieldContainer[AttributeCondition]
    def __init__(self, include_categories: _Optional[_Iterable[str]] = ..., exclude_categories: _Optional[_Iterable[str]] = ..., exclude_product_ids: _Optional[_Iterable[str]] = ..., in_stock_only: _Optional[bool] = ..., min_price: _Optional[float] = ..., max_price: _Optional[float] = ..., include_purchased: _Optional[bool] = ..., max_per_category: _Optional[int] = ..., attributes: _Optional[_Iterable[_Union[AttributeCondition, _Mapping]]] = ...) -> None: ...

class AttributeCondition(_message.Message):
    __slots__ = ("name", "equals", "any_of", "range")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EQUALS_FIELD_NUMBER: _ClassVar[int]
    ANY_OF_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    equals: str
    any_of: AttributeValues
    range: NumericRange
    def __init__(self, name: _Optional[str] = ..., equals: _Optional[str] = ..., any_of: _Optional[_Union[AttributeValues, _Mapping]] = ..., range: _Optional[_Union[NumericRange, _Mapping]] = ...) -> None: ...

class AttributeValues(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class NumericRange(_message.Message):
    __slots__ = ("min", "max")
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    min: float
    max: float
    def __init__(self, min: _Optional[float] = ..., max: _Optional[float] = ...) -> None: ...

class Context(_message.Message):
    __slots__ = ("surface", "device", "current_product_id", "session_product_ids")
    SURFACE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_PRODUCT_IDS_FIELD_NUMBER: _ClassVar[int]
    surface: Surface
    device: str
    current_product_id: str
    session_product_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, surface: _Optional[_Union[Surface, str]] = ..., device: _Optional[str] = ..., current_product_id: _Optional[str] = ..., session_product_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Item(_message.Message):
    __slots__ = ("product_id", "score", "reason", "category", "slot", "promotion_id")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    PROMOTION_ID_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    score: float
    reason: str
    category: str
    slot: SlotKind
    promotion_id: str
    def __init__(self, product_id: _Optional[str] = ..., score: _Optional[float] = ..., reason: _Optional[str] = ..., category: _Optional[str] = ..., slot: _Optional[_Union[SlotKind, str]] = ..., promotion_id: _Optional[str] = ...) -> None: ...

class RecommendProductsRequest(_message.Message):
    __slots__ = ("customer_id", "limit", "filter", "context", "page_token")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    limit: int
    filter: Filter
    context: Context
    page_token: str
    def __init__(self, customer_id: _Optional[str] = ..., limit: _Optional[int] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., context: _Optional[_Union[Context, _Mapping]] = ..., page_token: _Optional[str] = ...) -> None: ...

class RecommendProductsResponse(_message.Message):
    __slots__ = ("items", "recommendation_id", "model_version", "personalized", "next_page_token", "experiment", "arm")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PERSONALIZED_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Item]
    recommendation_id: str
    model_version: str
    personalized: bool
    next_page_token: str
    experiment: str
    arm: str
    def __init__(self, items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ..., recommendation_id: _Optional[str] = ..., model_version: _Optional[str] = ..., personalized: _Optional[bool] = ..., next_page_token: _Optional[str] = ..., experiment: _Optional[str] = ..., arm: _Optional[str] = ...) -> None: ...

class SimilarProductsRequest(_message.Message):
    __slots__ = ("product_id", "limit", "filter")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    limit: int
    filter: Filter
    def __init__(self, product_id: _Optional[str] = ..., limit: _Optional[int] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ...) -> None: ...

class SimilarProductsResponse(_message.Message):
    __slots__ = ("items", "recommendation_id", "model_version", "experiment", "arm")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Item]
    recommendation_id: str
    model_version: str
    experiment: str
    arm: str
    def __init__(self, items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ..., recommendation_id: _Optional[str] = ..., model_version: _Optional[str] = ..., experiment: _Optional[str] = ..., arm: _Optional[str] = ...) -> None: ...

class RankProductsRequest(_message.Message):
    __slots__ = ("customer_id", "product_ids")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_IDS_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    product_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, customer_id: _Optional[str] = ..., product_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RankProductsResponse(_message.Message):
    __slots__ = ("items", "recommendation_id", "model_version", "personalized", "experiment", "arm")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PERSONALIZED_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Item]
    recommendation_id: str
    model_version: str
    personalized: bool
    experiment: str
    arm: str
    def __init__(self, items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ..., recommendation_id: _Optional[str] = ..., model_version: _Optional[str] = ..., personalized: _Optional[bool] = ..., experiment: _Optional[str] = ..., arm: _Optional[str] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("version", "created_at", "customers", "products", "interactions", "metrics", "index_kind", "index_recall", "loaded_at")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    INTERACTIONS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    INDEX_KIND_FIELD_NUMBER: _ClassVar[int]
    INDEX_RECALL_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_FIELD_NUMBER: _ClassVar[int]
    version: str
    created_at: str
    customers: int
    products: int
    interactions: int
    metrics: _containers.ScalarMap[str, float]
    index_kind: str
    index_recall: float
    loaded_at: str
    def __init__(self, version: _Optional[str] = ..., created_at: _Optional[str] = ..., customers: _Optional[int] = ..., products: _Optional[int] = ..., interactions: _Optional[int] = ..., metrics: _Optional[_Mapping[str, float]] = ..., index_kind: _Optional[str] = ..., index_recall: _Optional[float] = ..., loaded_at: _Optional[str] = ...) -> None: ...

class ReloadModelRequest(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: str
    def __init__(self, version: _Optional[str] = ...) -> None: ...

class ReloadModelResponse(_message.Message):
    __slots__ = ("changed", "version")
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    changed: bool
    version: str
    def __init__(self, changed: _Optional[bool] = ..., version: _Optional[str] = ...) -> None: ...

class ProductUpdate(_message.Message):
    __slots__ = ("product_id", "stock", "price", "title", "category", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    STOCK_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    stock: int
    price: float
    title: str
    category: str
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, product_id: _Optional[str] = ..., stock: _Optional[int] = ..., price: _Optional[float] = ..., title: _Optional[str] = ..., category: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class UpdateProductsRequest(_message.Message):
    __slots__ = ("updates",)
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[ProductUpdate]
    def __init__(self, updates: _Optional[_Iterable[_Union[ProductUpdate, _Mapping]]] = ...) -> None: ...

class UpdateProductsResponse(_message.Message):
    __slots__ = ("updated",)
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    updated: int
    def __init__(self, updated: _Optional[int] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("event_id", "customer_id", "type", "product_id", "offer_id", "timestamp", "quantity", "amount", "recommendation_id")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_ID_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    customer_id: str
    type: EventType
    product_id: str
    offer_id: str
    timestamp: _timestamp_pb2.Timestamp
    quantity: float
    amount: float
    recommendation_id: str
    def __init__(self, event_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., type: _Optional[_Union[EventType, str]] = ..., product_id: _Optional[str] = ..., offer_id: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., quantity: _Optional[float] = ..., amount: _Optional[float] = ..., recommendation_id: _Optional[str] = ...) -> None: ...

class TrackEventsRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class EventResult(_message.Message):
    __slots__ = ("event_id", "status", "reason")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    status: EventStatus
    reason: str
    def __init__(self, event_id: _Optional[str] = ..., status: _Optional[_Union[EventStatus, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class TrackEventsResponse(_message.Message):
    __slots__ = ("results", "accepted", "duplicates", "rejected")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[EventResult]
    accepted: int
    duplicates: int
    rejected: int
    def __init__(self, results: _Optional[_Iterable[_Union[EventResult, _Mapping]]] = ..., accepted: _Optional[int] = ..., duplicates: _Optional[int] = ..., rejected: _Optional[int] = ...) -> None: ...

class RecommendOffersRequest(_message.Message):
    __slots__ = ("customer_id", "limit", "context")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    limit: int
    context: Context
    def __init__(self, customer_id: _Optional[str] = ..., limit: _Optional[int] = ..., context: _Optional[_Union[Context, _Mapping]] = ...) -> None: ...

class Offer(_message.Message):
    __slots__ = ("offer_id", "title", "kind", "value", "probability", "expected_value", "reason", "target_categories", "target_products")
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VALUE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TARGET_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    TARGET_PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    offer_id: str
    title: str
    kind: str
    value: float
    probability: float
    expected_value: float
    reason: str
    target_categories: _containers.RepeatedScalarFieldContainer[str]
    target_products: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, offer_id: _Optional[str] = ..., title: _Optional[str] = ..., kind: _Optional[str] = ..., value: _Optional[float] = ..., probability: _Optional[float] = ..., expected_value: _Optional[float] = ..., reason: _Optional[str] = ..., target_categories: _Optional[_Iterable[str]] = ..., target_products: _Optional[_Iterable[str]] = ...) -> None: ...

class RecommendOffersResponse(_message.Message):
    __slots__ = ("offers", "recommendation_id", "catalog_version", "personalized")
    OFFERS_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_ID_FIELD_NUMBER: _ClassVar[int]
    CATALOG_VERSION_FIELD_NUMBER: _ClassVar[int]
    PERSONALIZED_FIELD_NUMBER: _ClassVar[int]
    offers: _containers.RepeatedCompositeFieldContainer[Offer]
    recommendation_id: str
    catalog_version: str
    personalized: bool
    def __init__(self, offers: _Optional[_Iterable[_Union[Offer, _Mapping]]] = ..., recommendation_id: _Optional[str] = ..., catalog_version: _Optional[str] = ..., personalized: _Optional[bool] = ...) -> None: ...

class GetCustomerProfileRequest(_message.Message):
    __slots__ = ("customer_id",)
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    def __init__(self, customer_id: _Optional[str] = ...) -> None: ...

class CustomerProfile(_message.Message):
    __slots__ = ("customer_id", "known", "segment", "lifecycle_stage", "tier", "points", "r_score", "f_score", "m_score", "expected_purchases", "clv", "p_alive", "churn_risk", "top_categories", "purchases", "spend", "consent_personalization", "features_as_of", "top_categories_model")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    LIFECYCLE_STAGE_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    R_SCORE_FIELD_NUMBER: _ClassVar[int]
    F_SCORE_FIELD_NUMBER: _ClassVar[int]
    M_SCORE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_PURCHASES_FIELD_NUMBER: _ClassVar[int]
    CLV_FIELD_NUMBER: _ClassVar[int]
    P_ALIVE_FIELD_NUMBER: _ClassVar[int]
    CHURN_RISK_FIELD_NUMBER: _ClassVar[int]
    TOP_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    PURCHASES_FIELD_NUMBER: _ClassVar[int]
    SPEND_FIELD_NUMBER: _ClassVar[int]
    CONSENT_PERSONALIZATION_FIELD_NUMBER: _ClassVar[int]
    FEATURES_AS_OF_FIELD_NUMBER: _ClassVar[int]
    TOP_CATEGORIES_MODEL_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    known: bool
    segment: str
    lifecycle_stage: str
    tier: str
    points: float
    r_score: int
    f_score: int
    m_score: int
    expected_purchases: float
    clv: float
    p_alive: float
    churn_risk: float
    top_categories: _containers.RepeatedScalarFieldContainer[str]
    purchases: int
    spend: float
    consent_personalization: bool
    features_as_of: str
    top_categories_model: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, customer_id: _Optional[str] = ..., known: _Optional[bool] = ..., segment: _Optional[str] = ..., lifecycle_stage: _Optional[str] = ..., tier: _Optional[str] = ..., points: _Optional[float] = ..., r_score: _Optional[int] = ..., f_score: _Optional[int] = ..., m_score: _Optional[int] = ..., expected_purchases: _Optional[float] = ..., clv: _Optional[float] = ..., p_alive: _Optional[float] = ..., churn_risk: _Optional[float] = ..., top_categories: _Optional[_Iterable[str]] = ..., purchases: _Optional[int] = ..., spend: _Optional[float] = ..., consent_personalization: _Optional[bool] = ..., features_as_of: _Optional[str] = ..., top_categories_model: _Optional[_Iterable[str]] = ...) -> None: ...

class SetLoyaltyRequest(_message.Message):
    __slots__ = ("customer_id", "tier", "points", "points_delta")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    POINTS_DELTA_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    tier: str
    points: float
    points_delta: float
    def __init__(self, customer_id: _Optional[str] = ..., tier: _Optional[str] = ..., points: _Optional[float] = ..., points_delta: _Optional[float] = ...) -> None: ...

class SetLoyaltyResponse(_message.Message):
    __slots__ = ("tier", "points")
    TIER_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    tier: str
    points: float
    def __init__(self, tier: _Optional[str] = ..., points: _Optional[float] = ...) -> None: ...

class ReloadOffersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TrendingProductsRequest(_message.Message):
    __slots__ = ("category", "limit", "filter")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    category: str
    limit: int
    filter: Filter
    def __init__(self, category: _Optional[str] = ..., limit: _Optional[int] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ...) -> None: ...

class TrendingProductsResponse(_message.Message):
    __slots__ = ("items", "recommendation_id", "model_version")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Item]
    recommendation_id: str
    model_version: str
    def __init__(self, items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ..., recommendation_id: _Optional[str] = ..., model_version: _Optional[str] = ...) -> None: ...

class ReloadPromotionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadPromotionsResponse(_message.Message):
    __slots__ = ("promotions_version", "promotions", "active")
    PROMOTIONS_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROMOTIONS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    promotions_version: str
    promotions: int
    active: int
    def __init__(self, promotions_version: _Optional[str] = ..., promotions: _Optional[int] = ..., active: _Optional[int] = ...) -> None: ...

class ReloadOffersResponse(_message.Message):
    __slots__ = ("catalog_version", "offers")
    CATALOG_VERSION_FIELD_NUMBER: _ClassVar[int]
    OFFERS_FIELD_NUMBER: _ClassVar[int]
    catalog_version: str
    offers: int
    def __init__(self, catalog_version: _Optional[str] = ..., offers: _Optional[int] = ...) -> None: ...

class ReloadExperimentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadExperimentsResponse(_message.Message):
    __slots__ = ("config_version", "experiments", "model_versions")
    CONFIG_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    config_version: str
    experiments: int
    model_versions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, config_version: _Optional[str] = ..., experiments: _Optional[int] = ..., model_versions: _Optional[_Iterable[str]] = ...) -> None: ...

class ForgetCustomerRequest(_message.Message):
    __slots__ = ("customer_id",)
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    def __init__(self, customer_id: _Optional[str] = ...) -> None: ...

class ForgetCustomerResponse(_message.Message):
    __slots__ = ("keys_removed", "events_removed", "tombstoned")
    KEYS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    EVENTS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    TOMBSTONED_FIELD_NUMBER: _ClassVar[int]
    keys_removed: int
    events_removed: int
    tombstoned: bool
    def __init__(self, keys_removed: _Optional[int] = ..., events_removed: _Optional[int] = ..., tombstoned: _Optional[bool] = ...) -> None: ...

class ExportCustomerDataRequest(_message.Message):
    __slots__ = ("customer_id",)
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    def __init__(self, customer_id: _Optional[str] = ...) -> None: ...

class ExportCustomerDataResponse(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...
