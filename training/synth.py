"""A deterministic synthetic retail world: catalog, customers and their interactions.

The world is built to exercise a recommender the way real loyalty data does:

* categories with their own price levels, brands, title vocabularies and (for consumables)
  replenishment cycles; Zipf-like product popularity within and across categories;
* customers who belong to a latent persona, prefer a handful of categories and carry a latent
  taste vector; a product is chosen with probability ~ softmax(taste . product + log popularity)
  inside a preferred category, with ~10% popularity-driven exploration of other categories;
* heavy-tailed activity (a few power users, many customers with one or two events, ~2% who
  never interacted), customers who sign up during the year and customers who churn;
* an online funnel view -> click -> add_to_cart -> purchase whose conversion rises with affinity,
  a few direct (in-store) purchases, and repeat purchases of consumables weeks apart;
* weekly, daily and yearly seasonality (Black Friday, December peak, January sales, summer lull);
* loyalty tiers and points derived from spend.

Everything is vectorized numpy. Customers are processed in fixed-size chunks, each with its own
random stream derived from (seed, chunk index), so the output depends only on the config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
import polars as pl
from tqdm import tqdm

from formats.events import INTERACTION_TYPES

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
B = npt.NDArray[np.bool_]

INTERACTIONS_SCHEMA: Final = pl.Schema(
    {
        "customer_id": pl.String(),
        "product_id": pl.String(),
        "timestamp": pl.Datetime("us", "UTC"),
        "event_type": pl.String(),
        "quantity": pl.Int32(),
        "amount": pl.Float64(),
    }
)
CATALOG_SCHEMA: Final = pl.Schema(
    {
        "product_id": pl.String(),
        "title": pl.String(),
        "category": pl.String(),
        "price": pl.Float64(),
        "in_stock": pl.Boolean(),
        "brand": pl.String(),
        "consumable": pl.Boolean(),
    }
)
CUSTOMERS_SCHEMA: Final = pl.Schema(
    {
        "customer_id": pl.String(),
        "signup_date": pl.Date(),
        "birthday": pl.Date(),
        "tier": pl.String(),
        "points": pl.Int64(),
        "consent_personalization": pl.Boolean(),
    }
)
TIERS: Final = ("bronze", "silver", "gold", "platinum")

# Event codes index INTERACTION_TYPES = (purchase, add_to_cart, click, view).
_PURCHASE, _CART, _CLICK, _VIEW = (
    INTERACTION_TYPES.index(e) for e in ("purchase", "add_to_cart", "click", "view")
)

# Part of the determinism contract: changing it changes every generated world.
_CHUNK_CUSTOMERS: Final = 50_000
# Cells (pairs x products) per softmax block; bounds memory of the choice step (~100 MB).
_BLOCK_CELLS: Final = 4_000_000
_DIM: Final = 16  # latent taste dimensions
_MAX_SLOTS: Final = 6  # most preferred categories per customer
_US_PER_DAY: Final = 86_400_000_000

# Behavioural knobs, tuned so that the event mix is ~50/25/12/13 % (view/click/cart/purchase)
# and ALS clearly beats popularity on a temporal hold-out of purchases.
_TASTE_STRENGTH: Final = 2.0  # scale of taste . product inside the softmax
_EXPLORE: Final = 0.10  # chains that ignore taste and follow popularity in any category
_STORE: Final = 0.04  # chains that are a direct (in-store) purchase, no online funnel
_NO_EVENTS: Final = 0.02  # registered customers who never interacted
_NEW_CUSTOMERS: Final = 0.35  # customers who sign up during the simulated period
_CHURN: Final = 0.20  # customers who stop interacting before the end
_REPEAT_P: Final = 0.6  # geometric "stop" probability for consumable re-purchases
# Funnel conversion = sigmoid(bias + slope * (affinity - centre)); the centre sits near the
# typical affinity of a chosen product, so conversions are ~50% on average.
_FUNNEL_CENTRE: Final = 2.6
_FUNNEL_SLOPE: Final = 0.8
_CLICK_BIAS: Final = 0.0
_CART_BIAS: Final = -0.8
_BUY_BIAS: Final = 0.0


@dataclass(frozen=True)
class SynthConfig:
    customers: int = 10_000
    products: int = 1_000
    seed: int = 0
    events_per_customer: float = 20.0  # mean interactions per customer (all event types)
    categories: int = 0  # 0 = choose from products: clamp(products // 50, 5, 200)
    start: datetime = datetime(2025, 1, 1, tzinfo=UTC)
    days: int = 365


@dataclass(frozen=True)
class World:
    interactions: pl.DataFrame
    catalog: pl.DataFrame
    customers: pl.DataFrame


@dataclass(frozen=True)
class _Category:
    name: str
    price: float  # median price
    cycle_days: float  # replenishment interval; 0 = durable (not re-bought)
    adjectives: tuple[str, ...]
    nouns: tuple[str, ...]
    sizes: tuple[str, ...]

    @property
    def consumable(self) -> bool:
        return self.cycle_days > 0


def _cat(name: str, price: float, cycle: float, adj: str, nouns: str, sizes: str) -> _Category:
    return _Category(
        name, price, cycle, tuple(adj.split("|")), tuple(nouns.split("|")), tuple(sizes.split("|"))
    )


# Consumables and durables interleaved so that small worlds (5 categories) get both.
_BASE_CATEGORIES: Final = (
    _cat("coffee", 9.5, 21, "Arabica|Colombian|Dark Roast|Espresso|Decaf|Single Origin",
         "Coffee Beans|Ground Coffee|Coffee Pods", "250g|500g|1kg"),
    _cat("shoes", 65, 0, "Running|Leather|Canvas|Trail|Slip-On|Classic",
         "Sneakers|Boots|Loafers|Sandals", "Size 38|Size 40|Size 42|Size 44"),
    _cat("snacks", 3.2, 10, "Salted|Spicy|Cheddar|Sea Salt|BBQ|Honey Roasted",
         "Potato Chips|Pretzels|Mixed Nuts|Popcorn|Crackers", "100g|200g|Family Pack"),
    _cat("electronics", 110, 0, "Wireless|Bluetooth|Noise-Cancelling|Portable|Smart|Compact",
         "Headphones|Speaker|Charger|Power Bank|Earbuds", "Black|White|Silver"),
    _cat("baby", 18, 14, "Sensitive|Ultra-Soft|Overnight|Hypoallergenic|Gentle",
         "Diapers|Baby Wipes|Baby Formula|Baby Lotion", "Size 1|Size 3|Size 5|Jumbo Pack"),
    _cat("books", 14, 0, "Bestselling|Classic|Award-Winning|Illustrated|Pocket",
         "Novel|Cookbook|Biography|Thriller|Travel Guide", "Paperback|Hardcover|Large Print"),
    _cat("pet food", 24, 30, "Grain-Free|Chicken|Salmon|Senior|Puppy|Kitten",
         "Dry Dog Food|Wet Cat Food|Dog Treats|Cat Biscuits", "400g|2kg|5kg|12-Pack"),
    _cat("toys", 22, 0, "Wooden|Magnetic|Remote-Control|Educational|Plush",
         "Building Blocks|Puzzle|Race Car|Teddy Bear|Board Game", "Small|Medium|Deluxe Set"),
    _cat("dairy", 3.0, 7, "Organic|Whole|Low-Fat|Greek|Aged",
         "Milk|Yogurt|Cheddar Cheese|Butter", "250g|500ml|1L"),
    _cat("kitchen", 35, 0, "Non-Stick|Stainless|Cast Iron|Ceramic|Bamboo",
         "Frying Pan|Knife Set|Cutting Board|Saucepan|Mixing Bowls", "20cm|24cm|28cm|Set of 3"),
    _cat("beauty", 16, 45, "Hydrating|Matte|Vitamin C|Anti-Aging|Natural",
         "Face Serum|Lipstick|Moisturizer|Mascara|Sunscreen", "30ml|50ml|100ml"),
    _cat("apparel", 30, 0, "Cotton|Slim-Fit|Oversized|Linen|Striped|Merino",
         "T-Shirt|Hoodie|Jeans|Sweater|Shirt", "S|M|L|XL"),
    _cat("cleaning", 6, 30, "Lemon|Eco|Antibacterial|Lavender|Fragrance-Free",
         "Dish Soap|Laundry Detergent|All-Purpose Cleaner|Dishwasher Tablets",
         "500ml|1L|2L|40-Pack"),
    _cat("garden", 28, 0, "Solar|Outdoor|Weatherproof|Ergonomic|Self-Watering",
         "Planter|Garden Hose|Pruning Shears|String Lights", "Small|Large|10m|20m"),
    _cat("beverages", 2.5, 7, "Sparkling|Sugar-Free|Tropical|Cold-Brew|Citrus",
         "Water|Iced Tea|Energy Drink|Juice|Soda", "330ml|1L|6-Pack|12-Pack"),
    _cat("sports", 40, 0, "Lightweight|Pro|Adjustable|Foldable|Non-Slip",
         "Yoga Mat|Dumbbells|Tennis Racket|Water Bottle|Resistance Bands", "Standard|2kg|5kg|Set"),
    _cat("personal care", 5.5, 30, "Mint|Whitening|Sensitive|Charcoal|Herbal",
         "Toothpaste|Shampoo|Body Wash|Deodorant|Razor Blades", "75ml|250ml|400ml|4-Pack"),
    _cat("home decor", 25, 0, "Scandinavian|Vintage|Minimalist|Handmade|Velvet",
         "Cushion|Candle|Picture Frame|Vase|Throw Blanket", "Small|Medium|Large"),
    _cat("bakery", 3.5, 5, "Sourdough|Whole Wheat|Multigrain|Butter|Cinnamon",
         "Bread|Croissants|Bagels|Muffins", "Loaf|4-Pack|6-Pack"),
    _cat("office", 8, 0, "Recycled|Premium|Gel|Spiral|Ergonomic",
         "Notebook|Pens|Desk Organizer|Stapler|Sticky Notes", "A5|A4|10-Pack"),
    _cat("wine", 14, 14, "Reserve|Dry|Organic|Sparkling|Barrel-Aged",
         "Red Wine|White Wine|Rosé|Prosecco", "750ml|Magnum|3-Pack"),
    _cat("jewelry", 55, 0, "Sterling Silver|Gold-Plated|Pearl|Minimalist|Vintage",
         "Necklace|Earrings|Bracelet|Ring", "One Size|Small|Medium"),
    _cat("frozen", 4.5, 10, "Stone-Baked|Family|Vegan|Crispy|Classic",
         "Pizza|Ice Cream|Fish Fingers|Mixed Vegetables|Dumplings", "400g|1kg|Tub"),
    _cat("furniture", 180, 0, "Oak|Upholstered|Extendable|Industrial|Modular",
         "Desk|Bookshelf|Armchair|Side Table|Bed Frame", "Single|Double|Compact"),
    _cat("tea", 5, 30, "Green|Earl Grey|Chamomile|Chai|Peppermint",
         "Tea Bags|Loose Leaf Tea|Matcha Powder", "20 Bags|80 Bags|100g"),
    _cat("bags", 45, 0, "Leather|Waterproof|Canvas|Travel|Crossbody",
         "Backpack|Tote Bag|Wallet|Duffel Bag|Laptop Sleeve", "Small|Medium|Large"),
    _cat("vitamins", 12, 30, "Vitamin D|Multivitamin|Omega-3|Probiotic|Magnesium",
         "Capsules|Gummies|Tablets|Powder", "30-Day|60-Day|90-Day"),
    _cat("automotive", 22, 0, "Heavy-Duty|Universal|Microfiber|Synthetic|LED",
         "Car Wash Kit|Phone Mount|Floor Mats|Wiper Blades|Seat Covers", "Set|Pair|Standard"),
    _cat("pantry", 2.8, 14, "Whole Grain|Organic|Basmati|Italian|Gluten-Free",
         "Spaghetti|Rice|Quinoa|Oats|Lentils", "500g|1kg|2kg"),
    _cat("video games", 45, 0, "Open-World|Racing|Co-op|Retro|Strategy",
         "Adventure Game|Shooter|RPG|Sports Game|Puzzle Game",
         "Standard Edition|Deluxe Edition|Digital Code"),
    _cat("meat", 9, 7, "Free-Range|Grass-Fed|Smoked|Marinated|Lean",
         "Chicken Breast|Beef Mince|Sausages|Bacon|Salmon Fillet", "300g|500g|1kg"),
    _cat("tools", 35, 0, "Cordless|Precision|Magnetic|Compact|Heavy-Duty",
         "Drill|Screwdriver Set|Tape Measure|Hammer|Socket Set", "12V|18V|Set|Standard"),
    _cat("produce", 2.2, 5, "Fresh|Organic|Ripe|Seasonal|Baby",
         "Bananas|Apples|Avocados|Spinach|Tomatoes|Berries", "500g|1kg|Bunch"),
    _cat("bedding", 40, 0, "Egyptian Cotton|Linen|Bamboo|Cooling|Down-Alternative",
         "Duvet Cover|Pillow|Sheet Set|Comforter", "Single|Double|King"),
    _cat("sweets", 2.0, 7, "Dark|Milk|Salted Caramel|Hazelnut|Mint",
         "Chocolate Bar|Gummy Bears|Truffles|Cookies", "100g|200g|Gift Box"),
    _cat("lighting", 30, 0, "LED|Dimmable|Smart|Industrial|Rechargeable",
         "Desk Lamp|Floor Lamp|Light Bulbs|Pendant Light", "Warm White|Cool White|Set of 2"),
    _cat("breakfast", 3.8, 10, "Crunchy|Honey|Nutty|Oat|Chocolate",
         "Cereal|Muesli|Granola|Pancake Mix", "375g|500g|750g"),
    _cat("watches", 95, 0, "Chronograph|Automatic|Digital|Minimalist|Diver",
         "Watch|Smartwatch|Watch Strap", "38mm|42mm|44mm"),
    _cat("sauces", 3.0, 21, "Spicy|Smoky|Garlic|Sweet Chili|Classic",
         "Ketchup|Hot Sauce|Mayonnaise|Pesto|Olive Oil", "250ml|500ml|1L"),
    _cat("camping", 55, 0, "Ultralight|Waterproof|Insulated|4-Season|Packable",
         "Tent|Sleeping Bag|Headlamp|Camping Stove|Hiking Poles", "1-Person|2-Person|Standard"),
    _cat("paper goods", 7, 21, "Soft|Ultra|Recycled|Quilted|Extra-Absorbent",
         "Toilet Paper|Paper Towels|Tissues|Napkins", "4-Pack|9-Pack|24-Pack"),
    _cat("phone accessories", 18, 0, "Shockproof|Clear|Magnetic|Braided|Fast",
         "Phone Case|Screen Protector|USB-C Cable|Car Charger", "1m|2m|Pack of 2"),
    _cat("beer", 9, 7, "Craft|Hazy|Crisp|Barrel-Aged|Session",
         "IPA|Lager|Stout|Pale Ale|Cider", "4-Pack|6-Pack|12-Pack"),
    _cat("appliances", 85, 0, "Digital|Compact|Stainless|Programmable|Cordless",
         "Kettle|Toaster|Blender|Air Fryer|Vacuum Cleaner", "1.7L|1000W|Standard"),
    _cat("deli", 5.5, 7, "Sliced|Smoked|Aged|Italian|Herb",
         "Ham|Salami|Hummus|Olives|Antipasti", "100g|200g|Tub"),
    _cat("crafts", 12, 0, "Watercolor|Acrylic|Metallic|Pastel|Assorted",
         "Paint Set|Brush Set|Sketchbook|Yarn|Markers", "12 Colors|24 Colors|A4|Set"),
    _cat("fragrance", 48, 90, "Woody|Floral|Citrus|Fresh|Amber",
         "Eau de Parfum|Eau de Toilette|Body Mist", "30ml|50ml|100ml"),
    _cat("eyewear", 60, 0, "Polarized|Blue-Light|Aviator|Round|Sport",
         "Sunglasses|Reading Glasses|Glasses Case", "Black|Tortoise|Gold"),
    _cat("seafood", 12, 10, "Wild|Smoked|Frozen|Line-Caught|Peeled",
         "Prawns|Cod Fillets|Tuna Steaks|Mussels", "200g|400g|1kg"),
    _cat("gifts", 20, 0, "Personalized|Luxury|Handmade|Festive|Scented",
         "Gift Set|Hamper|Greeting Cards|Gift Box", "Small|Large|Set"),
)  # fmt: skip
# Beyond 50 categories, variants of the base ones at another price level ("premium coffee").
_MODIFIERS: Final = (("", 1.0), ("premium", 1.9), ("value", 0.55), ("eco", 1.25), ("deluxe", 2.6))

_BRAND_HEADS: Final = (
    "Nor", "Vel", "Ast", "Bright", "Cal", "Dun", "Elm", "Fair", "Gold", "Har", "Iron", "Jun",
    "Kin", "Lum", "Mar", "Nova", "Oak", "Pine", "Quin", "Red", "Sil", "Tru", "Ultra", "Vista",
)  # fmt: skip
_BRAND_TAILS: Final = (
    "vale", "ora", "field", "stone", "wick", "more", "bury", "ton", "leaf", "crest", "line",
    "wood", "haven", "mark", "lux", "ridge",
)  # fmt: skip
_BRANDS_PER_CATEGORY: Final = 12

# Relative traffic per weekday (Monday first) and per hour of day (UTC hours when `start` is
# midnight UTC, the default; the day grid is anchored at `start`).
_WEEKDAY: Final = np.array([0.90, 0.88, 0.92, 0.97, 1.08, 1.25, 1.12])
_HOURS: Final = np.array(
    [0.15, 0.08, 0.05, 0.04, 0.05, 0.12, 0.35, 0.6, 0.8, 0.9, 1.0, 1.15,
     1.35, 1.2, 1.0, 0.95, 1.0, 1.15, 1.4, 1.6, 1.65, 1.4, 0.9, 0.45]
)  # fmt: skip


def generate(config: SynthConfig, progress: bool = False) -> World:
    """Generate the world for ``config``; the same config always gives identical frames."""
    _validate(config)
    root = np.random.SeedSequence(config.seed)
    s_catalog, s_customers, s_personas, s_chunks, s_loyalty = root.spawn(5)

    catalog = _make_catalog(config, np.random.default_rng(s_catalog))
    people = _make_customers(config, np.random.default_rng(s_customers))
    personas = _make_personas(catalog, np.random.default_rng(s_personas))
    season = _Season.build(config)

    product_ids = _ids("P", config.products, 6)
    customer_ids = _ids("C", config.customers, 7)
    event_names = pl.Series(INTERACTION_TYPES, dtype=pl.Utf8)
    spend = np.zeros(config.customers, dtype=np.float64)
    frames: list[pl.DataFrame] = []
    n_chunks = math.ceil(config.customers / _CHUNK_CUSTOMERS)
    chunk_seeds = s_chunks.spawn(n_chunks)
    with tqdm(total=config.customers, unit="customers", desc="synth", disable=not progress) as bar:
        for index, chunk_seed in enumerate(chunk_seeds):
            lo = index * _CHUNK_CUSTOMERS
            hi = min(lo + _CHUNK_CUSTOMERS, config.customers)
            ev = _chunk_events(
                lo, hi, people, catalog, personas, season, np.random.default_rng(chunk_seed)
            )
            spend[lo:hi] = np.bincount(
                ev.customer - lo, weights=np.nan_to_num(ev.amount), minlength=hi - lo
            )
            frames.append(
                pl.DataFrame(
                    {
                        "customer_id": customer_ids.gather(ev.customer),
                        "product_id": product_ids.gather(ev.product),
                        "timestamp": pl.Series(ev.ts).cast(pl.Datetime("us", "UTC")),
                        "event_type": event_names.gather(ev.event),
                        "quantity": pl.Series(ev.quantity, dtype=pl.Int32),
                        "amount": pl.Series(ev.amount, dtype=pl.Float64, nan_to_null=True),
                    }
                )
            )
            bar.update(hi - lo)
    interactions = (
        pl.concat(frames, rechunk=False) if frames else pl.DataFrame(schema=INTERACTIONS_SCHEMA)
    )
    return World(
        interactions=interactions,
        catalog=catalog.frame(product_ids),
        customers=people.frame(customer_ids, spend, np.random.default_rng(s_loyalty)),
    )


def write_world(
    world: World, out_dir: Path, fmt: Literal["parquet", "csv"] = "parquet"
) -> dict[str, Path]:
    """Write interactions, catalog and customers as ``<name>.<fmt>`` into ``out_dir``."""
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"unknown format {fmt!r}: expected 'parquet' or 'csv'")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, frame in (
        ("interactions", world.interactions),
        ("catalog", world.catalog),
        ("customers", world.customers),
    ):
        path = out_dir / f"{name}.{fmt}"
        if fmt == "parquet":
            frame.write_parquet(path)
        else:
            frame.write_csv(path)
        paths[name] = path
    return paths


def _validate(config: SynthConfig) -> None:
    if config.customers < 1 or config.products < 1:
        raise ValueError("customers and products must be at least 1")
    if config.events_per_customer < 0 or not math.isfinite(config.events_per_customer):
        raise ValueError("events_per_customer must be a finite number >= 0")
    if config.categories < 0:
        raise ValueError("categories must be >= 0 (0 = automatic)")
    if config.days < 1:
        raise ValueError("days must be at least 1")


def _ids(prefix: str, n: int, width: int) -> pl.Series:
    """Ids like C0000001, numbered from 1; the zero-padding widens only if n needs it."""
    width = max(width, len(str(n)))
    return pl.select(
        pl.concat_str(pl.lit(prefix), pl.int_range(1, n + 1).cast(pl.Utf8).str.zfill(width))
    ).to_series()


def _start_us(config: SynthConfig) -> int:
    start = config.start if config.start.tzinfo else config.start.replace(tzinfo=UTC)
    return (start - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _start_date(config: SynthConfig) -> date:
    start = config.start if config.start.tzinfo else config.start.replace(tzinfo=UTC)
    return start.astimezone(UTC).date()


def _n_categories(config: SynthConfig) -> int:
    k = config.categories or min(max(config.products // 50, 5), 200)
    return min(k, config.products)


# ---------------------------------------------------------------------------------------------
# Catalog


@dataclass(frozen=True)
class _Catalog:
    category: I64  # per product
    price: F64
    in_stock: B
    brand: I64  # index into brand_names
    title_parts: tuple[pl.Series, pl.Series, pl.Series]  # adjective, noun, size per product
    vectors: F32  # (n_products, _DIM) latent product vectors
    # Products grouped by category (stable order): ``by_cat[cat_start[c]:cat_start[c + 1]]``.
    by_cat: I64
    cat_start: I64
    log_pop_sorted: F32  # log within-category popularity, in by_cat order
    pop_cdf_sorted: F64  # category index + within-category popularity CDF, in by_cat order
    cat_pop: F64  # share of traffic per category
    cat_names: tuple[str, ...]
    cat_consumable: B
    cat_cycle_days: F64
    brand_names: tuple[str, ...]

    @property
    def n_categories(self) -> int:
        return len(self.cat_names)

    def frame(self, product_ids: pl.Series) -> pl.DataFrame:
        adj, noun, size = self.title_parts
        number = pl.int_range(1, len(product_ids) + 1, eager=True).cast(pl.Utf8)
        title = pl.select(
            pl.concat_str([adj, noun, size], separator=" ") + pl.lit(" #") + number
        ).to_series()
        return pl.DataFrame(
            {
                "product_id": product_ids,
                "title": title,
                "category": pl.Series(self.cat_names, dtype=pl.Utf8).gather(self.category),
                "price": self.price,
                "in_stock": self.in_stock,
                "brand": pl.Series(self.brand_names, dtype=pl.Utf8).gather(self.brand),
                "consumable": self.cat_consumable[self.category],
            },
            schema=CATALOG_SCHEMA,
        )


def _category_defs(k: int) -> list[tuple[_Category, str, float]]:
    """k categories as (category, modifier, price multiplier); loops over categories only."""
    nb, nm = len(_BASE_CATEGORIES), len(_MODIFIERS)
    out = []
    for i in range(k):
        base = _BASE_CATEGORIES[i % nb]
        mod, mult = _MODIFIERS[(i // nb) % nm]
        name = f"{mod} {base.name}" if mod else base.name
        if i >= nb * nm:  # only for explicitly huge category counts
            name = f"{name} {i // (nb * nm) + 1}"
        out.append((replace(base, name=name), mod, mult))
    return out


def _make_catalog(config: SynthConfig, rng: np.random.Generator) -> _Catalog:
    m = config.products
    defs = _category_defs(_n_categories(config))
    k = len(defs)

    # Category sizes vary (some aisles are much deeper); every category gets >= 1 product.
    size_w = rng.lognormal(0.0, 0.6, k)
    counts = 1 + rng.multinomial(m - k, size_w / size_w.sum())
    category = rng.permutation(np.repeat(np.arange(k, dtype=np.int64), counts))
    by_cat = np.argsort(category, kind="stable").astype(np.int64)
    cat_start = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)

    # Prices: log-normal around a category median, shifted by a per-brand premium.
    brand_pool = [h + t for h in _BRAND_HEADS for t in _BRAND_TAILS]
    brand_order = rng.permuted(
        np.tile(np.arange(len(brand_pool)), (k, 1)), axis=1
    )  # distinct brands per category, brands shared across categories
    cat_brands = brand_order[:, :_BRANDS_PER_CATEGORY]
    n_brands = np.clip(counts // 8, 2, _BRANDS_PER_CATEGORY)
    # Squared uniform skews products toward each category's first (leading) brands.
    slot = np.minimum(
        (rng.random(m) ** 2 * n_brands[category]).astype(np.int64), n_brands[category] - 1
    )
    brand = cat_brands[category, slot].astype(np.int64)
    brand_premium = rng.lognormal(0.0, 0.25, len(brand_pool))

    median = np.array([c.price * mult for c, _, mult in defs])
    raw = median[category] * brand_premium[brand] * rng.lognormal(0.0, 0.45, m)
    # Shelf prices: x.99 above 5, cents below; never below 0.29.
    price = np.where(raw >= 5.0, np.floor(raw) + 0.99, np.round(raw, 2))
    price = np.maximum(price, 0.29)

    # Zipf-like popularity: random rank within the category, cheaper items slightly favoured.
    rank = np.empty(m, dtype=np.int64)
    key_order = np.lexsort((rng.random(m), category))
    rank[key_order] = np.arange(m) - np.repeat(cat_start[:-1], counts)
    exponent = rng.uniform(0.85, 1.15, k)[category]
    log_pop = -exponent * np.log1p(rank) - 0.3 * np.log(price / median[category])
    log_pop_sorted = log_pop[by_cat]
    # Normalise within each category (segment-wise) for the popularity CDF used by exploration.
    seg_max = np.maximum.reduceat(log_pop_sorted, cat_start[:-1])
    w = np.exp(log_pop_sorted - np.repeat(seg_max, counts))
    cum = np.cumsum(w)
    seg_base = np.repeat(np.concatenate(([0.0], cum[cat_start[1:-1] - 1])), counts)
    seg_total = np.repeat(cum[cat_start[1:] - 1], counts) - seg_base
    within = (cum - seg_base) / seg_total
    within[cat_start[1:] - 1] = 1.0
    pop_cdf_sorted = np.repeat(np.arange(k, dtype=np.float64), counts) + within

    # Category traffic is Zipf-like too; consumables are bought more often.
    cat_rank = rng.permutation(k)
    consumable = np.array([c.consumable for c, _, _ in defs])
    cat_pop = np.asarray((1.0 + cat_rank) ** -0.8 * np.where(consumable, 1.5, 1.0), np.float64)
    cat_pop /= cat_pop.sum()

    # Title words: one flat vocabulary per part, offsets per category (modifier capitalised).
    parts: list[pl.Series] = []
    for field in ("adjectives", "nouns", "sizes"):
        vocab: list[str] = []
        offset = np.zeros(k, dtype=np.int64)
        length = np.zeros(k, dtype=np.int64)
        for i, (c, mod, _) in enumerate(defs):
            words = getattr(c, field)
            if field == "adjectives" and mod:
                words = tuple(f"{mod.capitalize()} {w}" for w in words)
            offset[i], length[i] = len(vocab), len(words)
            vocab.extend(words)
        pick = offset[category] + (rng.random(m) * length[category]).astype(np.int64)
        parts.append(pl.Series(vocab, dtype=pl.Utf8).gather(pick))

    return _Catalog(
        category=category,
        price=price,
        in_stock=rng.random(m) < 0.92,
        brand=brand,
        title_parts=(parts[0], parts[1], parts[2]),
        vectors=rng.standard_normal((m, _DIM), dtype=np.float32),
        by_cat=by_cat,
        cat_start=cat_start,
        log_pop_sorted=log_pop_sorted.astype(np.float32),
        pop_cdf_sorted=pop_cdf_sorted,
        cat_pop=cat_pop,
        cat_names=tuple(c.name for c, _, _ in defs),
        cat_consumable=consumable,
        cat_cycle_days=np.array([c.cycle_days for c, _, _ in defs]),
        brand_names=tuple(brand_pool),
    )


# ---------------------------------------------------------------------------------------------
# Personas: shared taste centres and category mixes, the structure collaborative filtering finds


@dataclass(frozen=True)
class _Personas:
    cdf: F64  # persona share CDF
    centers: F32  # (n_personas, _DIM)
    cat_cdf_flat: F64  # row p holds p + CDF over categories for persona p


def _make_personas(cat: _Catalog, rng: np.random.Generator) -> _Personas:
    k = cat.n_categories
    n = min(max(k // 2, 4), 64)
    share = rng.lognormal(0.0, 0.7, n)
    # Sparse category mixes (small gamma shape) leaning on popular categories; 20% global mix
    # keeps every category reachable.
    mix = rng.gamma(0.3, 1.0, (n, k)) * cat.cat_pop**0.5
    mix = 0.8 * mix / mix.sum(axis=1, keepdims=True) + 0.2 * cat.cat_pop
    cdf = np.cumsum(mix, axis=1)
    cdf /= cdf[:, -1:]
    cdf[:, -1] = 1.0
    return _Personas(
        cdf=_cdf(share),
        centers=rng.standard_normal((n, _DIM), dtype=np.float32),
        cat_cdf_flat=np.asarray(cdf + np.arange(n)[:, None], dtype=np.float64).ravel(),
    )


def _cdf(weights: F64) -> F64:
    c = np.cumsum(weights)
    c /= c[-1]
    c[-1] = 1.0
    return c


# ---------------------------------------------------------------------------------------------
# Customers


@dataclass(frozen=True)
class _Customers:
    n_events: I64  # event budget per customer
    active_from: I64  # first day (relative to start) the customer may interact
    active_to: I64  # exclusive last day
    signup_day: I64  # relative to start; < active_from
    age_days: I64  # age at start, in days
    consent: B
    start: date

    def frame(self, ids: pl.Series, spend: F64, rng: np.random.Generator) -> pl.DataFrame:
        epoch_day = (self.start - date(1970, 1, 1)).days
        tier, points = _loyalty(spend, rng)
        return pl.DataFrame(
            {
                "customer_id": ids,
                "signup_date": pl.Series(epoch_day + self.signup_day).cast(pl.Int32),
                "birthday": pl.Series(epoch_day - self.age_days).cast(pl.Int32),
                "tier": pl.Series(TIERS, dtype=pl.Utf8).gather(tier),
                "points": points,
                "consent_personalization": self.consent,
            }
        ).cast({"signup_date": pl.Date, "birthday": pl.Date})


def _make_customers(config: SynthConfig, rng: np.random.Generator) -> _Customers:
    n, days = config.customers, config.days
    total = round(n * config.events_per_customer)

    # New customers sign up during the period (leaving room for some activity); the rest
    # joined up to ~10 years before it. Activity starts the day after signup.
    new = (rng.random(n) < _NEW_CUSTOMERS) & (days > 14)
    signup = np.where(
        new,
        (rng.random(n) * max(days - 14, 1)).astype(np.int64),
        -1 - np.minimum(rng.exponential(700.0, n), 3650.0).astype(np.int64),
    )
    active_from = np.where(new, signup + 1, 0)
    churn = rng.random(n) < _CHURN
    span = days - active_from
    active_to = np.where(
        churn, active_from + np.maximum(7, (rng.random(n) * span).astype(np.int64)), days
    )
    active_to = np.minimum(active_to, days)

    # Heavy-tailed activity: a log-normal daily rate times the days active, apportioned so
    # the total is exact.
    active = rng.random(n) >= _NO_EVENTS
    if not active.any():
        active[:] = True
    weights = rng.lognormal(0.0, 1.25, n) * (active_to - active_from) * active
    n_active = int(active.sum())
    floor = 1 if total >= n_active else 0  # everyone active gets >= 1 event when possible
    n_events = floor * active + _apportion(weights, total - floor * n_active)

    # Ages 18-80 at the start date, centred on the early forties.
    age_years = np.clip(rng.normal(42.0, 14.0, n), 18.0, 80.99)
    age_days = np.maximum((age_years * 365.2425).astype(np.int64), 18 * 366)
    return _Customers(
        n_events=n_events.astype(np.int64),
        active_from=active_from.astype(np.int64),
        active_to=active_to.astype(np.int64),
        signup_day=signup.astype(np.int64),
        age_days=age_days,
        consent=rng.random(n) < 0.95,
        start=_start_date(config),
    )


def _apportion(weights: F64, total: int) -> I64:
    """Integer counts proportional to weights summing exactly to total (largest remainder)."""
    if total <= 0 or weights.sum() <= 0:
        return np.zeros(len(weights), dtype=np.int64)
    quota = weights / weights.sum() * total
    counts = np.floor(quota).astype(np.int64)
    short = total - int(counts.sum())
    if short > 0:
        # Stable sort on the negated remainder: ties resolve by index, deterministically.
        counts[np.argsort(-(quota - counts), kind="stable")[:short]] += 1
    return np.asarray(counts, dtype=np.int64)


def _loyalty(spend: F64, rng: np.random.Generator) -> tuple[I64, I64]:
    """Tier from spend against round thresholds (set near the 60/88/97.5% quantiles of
    spenders, as a programme would publish them); points = tier-boosted spend minus redeemed
    500-point vouchers, so they never go negative."""
    tier = np.zeros(len(spend), dtype=np.int64)
    spenders = spend[spend > 0]
    if len(spenders):
        thresholds = [_round_sig(float(q), 2) for q in np.quantile(spenders, [0.6, 0.88, 0.975])]
        for t in thresholds:
            tier += (spend > 0) & (spend >= t)
    multiplier = np.array([1.0, 1.25, 1.5, 2.0])[tier]
    earned = np.floor(spend * multiplier).astype(np.int64)
    redeemed = 500 * rng.binomial(earned // 500, 0.5)
    return tier, earned - redeemed


def _round_sig(x: float, digits: int) -> float:
    if x <= 0:
        return x
    return round(x, digits - 1 - math.floor(math.log10(x)))


# ---------------------------------------------------------------------------------------------
# Time


@dataclass(frozen=True)
class _Season:
    day_cdf: F64  # length days + 1, day_cdf[d] = share of traffic before day d
    hour_cdf: F64
    start_us: int
    end_us: int

    @staticmethod
    def build(config: SynthConfig) -> _Season:
        days = np.datetime64(_start_date(config), "D") + np.arange(config.days)
        weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
        doy = (days - days.astype("datetime64[Y]")).astype(np.int64).astype(np.float64)

        def bump(center: float, width: float) -> F64:
            return np.asarray(np.exp(-0.5 * ((doy - center) / width) ** 2), dtype=np.float64)

        yearly = (
            1.0
            + 0.9 * bump(352, 9)  # December gifting peak
            + 0.7 * bump(331, 2.5)  # Black Friday / Cyber Monday
            + 0.25 * bump(4, 6)  # January sales
            - 0.15 * bump(215, 30)  # summer lull
        )
        trend = 1.0 + 0.15 * np.arange(config.days) / 365.0  # a growing business
        intensity = yearly * _WEEKDAY[weekday] * trend
        start_us = _start_us(config)
        return _Season(
            day_cdf=np.concatenate(([0.0], _cdf(intensity))),
            hour_cdf=_cdf(_HOURS),
            start_us=start_us,
            end_us=start_us + config.days * _US_PER_DAY,
        )

    def sample(self, lo_day: I64, hi_day: I64, rng: np.random.Generator) -> I64:
        """Seasonal timestamps (us) with each one inside [lo_day, hi_day) of its row."""
        lo, hi = self.day_cdf[lo_day], self.day_cdf[hi_day]
        u = lo + rng.random(len(lo_day)) * (hi - lo)
        day = np.clip(np.searchsorted(self.day_cdf, u, side="right") - 1, lo_day, hi_day - 1)
        hour = np.searchsorted(self.hour_cdf, rng.random(len(lo_day)), side="right")
        within = rng.integers(0, 3_600_000_000, len(lo_day))
        return np.asarray(
            self.start_us + day * _US_PER_DAY + np.minimum(hour, 23) * 3_600_000_000 + within,
            dtype=np.int64,
        )


# ---------------------------------------------------------------------------------------------
# Interactions


@dataclass(frozen=True)
class _Events:
    customer: I64  # global customer index
    product: I64
    ts: I64  # microseconds since epoch
    event: I64  # index into INTERACTION_TYPES
    quantity: I32
    amount: F64  # NaN for non-purchases


def _chunk_events(
    lo: int,
    hi: int,
    people: _Customers,
    cat: _Catalog,
    personas: _Personas,
    season: _Season,
    rng: np.random.Generator,
) -> _Events:
    n = hi - lo
    k = cat.n_categories
    budget = people.n_events[lo:hi]

    # Latent tastes: near the persona centre plus an individual component.
    persona = np.searchsorted(personas.cdf, rng.random(n), side="right")
    persona = np.minimum(persona, len(personas.cdf) - 1)
    taste = 0.75 * personas.centers[persona] + 0.66 * rng.standard_normal(
        (n, _DIM), dtype=np.float32
    )
    taste *= np.float32(_TASTE_STRENGTH / math.sqrt(_DIM))

    # Preferred categories: up to 6 draws from the persona's mix (more for active customers),
    # with random weights; duplicate draws simply merge into a stronger preference.
    n_slots = np.minimum(_MAX_SLOTS, 1 + rng.poisson(1.0 + 0.5 * np.log1p(budget)))
    q = persona[:, None] + rng.random((n, _MAX_SLOTS))
    slot_cat = np.searchsorted(personas.cat_cdf_flat, q, side="right") - persona[:, None] * k
    slot_cat = np.clip(slot_cat, 0, k - 1)
    slot_w = rng.gamma(1.0, 1.0, (n, _MAX_SLOTS)) * (np.arange(_MAX_SLOTS) < n_slots[:, None])
    slot_cdf = np.cumsum(slot_w, axis=1)
    slot_cdf /= slot_cdf[:, -1:]

    # A chain is one product interest: a funnel (view, click, cart, purchase) or a store
    # purchase, plus re-purchases. Each yields >= 1 event, and we draw more chains than the
    # budget needs, then keep each customer's first `budget` events (in chain order).
    n_chains = np.where(budget > 0, np.ceil(budget / 1.3).astype(np.int64) + 1, 0)
    owner = np.repeat(np.arange(n, dtype=np.int64), n_chains)
    c = len(owner)
    explore = rng.random(c) < _EXPLORE
    slot = (rng.random(c)[:, None] > slot_cdf[owner]).sum(axis=1)
    chain_cat = np.where(
        explore,
        np.minimum(np.searchsorted(_cdf(cat.cat_pop), rng.random(c), side="right"), k - 1),
        slot_cat[owner, np.minimum(slot, _MAX_SLOTS - 1)],
    )
    u_pick = rng.random(c)
    product = np.empty(c, dtype=np.int64)
    affinity = np.empty(c, dtype=np.float32)

    # Exploration follows within-category popularity only.
    ex = np.flatnonzero(explore)
    pos = np.searchsorted(cat.pop_cdf_sorted, chain_cat[ex] + u_pick[ex], side="right")
    pos = np.clip(pos, cat.cat_start[chain_cat[ex]], cat.cat_start[chain_cat[ex] + 1] - 1)
    product[ex] = cat.by_cat[pos]
    affinity[ex] = np.einsum("ij,ij->i", taste[owner[ex]], cat.vectors[product[ex]])

    # Taste-driven choice: softmax(taste . product + log popularity) over the category.
    _choose(np.flatnonzero(~explore), owner, chain_cat, u_pick, taste, cat, product, affinity)

    # Funnel: conversion rises with affinity (logistic), so purchases reveal taste best.
    store = rng.random(c) < _STORE
    z = np.float32(_FUNNEL_SLOPE) * (affinity - np.float32(_FUNNEL_CENTRE))
    click = rng.random(c) < _sigmoid(_CLICK_BIAS + z)
    cart = click & (rng.random(c) < _sigmoid(_CART_BIAS + z))
    buy = cart & (rng.random(c) < _sigmoid(_BUY_BIAS + z))
    stages = 1 + click.astype(np.int64) + cart + buy
    bought = store | buy
    consumable = cat.cat_consumable[chain_cat]
    repeats = np.where(
        bought & consumable, np.minimum(rng.geometric(_REPEAT_P, c) - 1, 12), 0
    ).astype(np.int64)
    length = np.where(store, 1, stages) + repeats
    qty = np.where(
        consumable,
        1 + np.minimum(rng.poisson(0.45, c), 11),
        1 + (rng.random(c) < 0.05),
    ).astype(np.int32)

    # Expand chains to events.
    first = np.cumsum(length) - length
    ev_chain = np.repeat(np.arange(c, dtype=np.int64), length)
    step = np.arange(len(ev_chain), dtype=np.int64) - first[ev_chain]
    online = ~store[ev_chain]
    # Funnel steps map view(0)->click(1)->cart(2)->purchase(3); later steps are re-purchases.
    event = np.where(online, _event_code(step), _PURCHASE)
    repeat_step = np.where(online, step >= 4, step >= 1)
    event = np.where(repeat_step, _PURCHASE, event)

    # Times: funnel steps seconds to minutes apart (some carts are bought a day or two later),
    # re-purchases a jittered replenishment cycle apart.
    start = season.sample(people.active_from[lo:hi][owner], people.active_to[lo:hi][owner], rng)
    e = len(ev_chain)
    gap_s = np.select(
        [step == 1, step == 2, step == 3],
        [
            rng.exponential(45.0, e),
            rng.exponential(150.0, e),
            np.where(
                rng.random(e) < 0.85, rng.exponential(480.0, e), rng.exponential(129_600.0, e)
            ),
        ],
        default=0.0,
    )
    cycle_s = cat.cat_cycle_days[chain_cat[ev_chain]] * 86_400.0 * rng.lognormal(0.0, 0.3, e)
    gap = np.where(repeat_step, np.maximum(cycle_s, 3 * 86_400.0), gap_s)
    gap_us = (gap * 1e6).astype(np.int64)
    ts = np.empty(e, dtype=np.int64)
    ts[first] = start
    for s in range(1, int(length.max(initial=1))):  # <= 16 steps: loop over steps, not rows
        idx = first[length > s] + s
        ts[idx] = ts[idx - 1] + gap_us[idx]

    # Keep events inside the period, then each customer's first `budget` of them.
    keep = ts < season.end_us
    ev_owner = owner[ev_chain]
    kept_owner = ev_owner[keep]
    rank = np.arange(len(kept_owner)) - np.searchsorted(kept_owner, kept_owner, side="left")
    sel = np.flatnonzero(keep)[rank < budget[kept_owner]]

    cust = ev_owner[sel]
    order = np.lexsort((ts[sel], cust))
    sel = sel[order]
    chain = ev_chain[sel]
    prod = product[chain]
    ev_code = event[sel]
    quantity = np.where((ev_code == _PURCHASE) | (ev_code == _CART), qty[chain], 1).astype(np.int32)
    amount = np.where(ev_code == _PURCHASE, np.round(cat.price[prod] * quantity, 2), np.nan).astype(
        np.float64
    )
    return _Events(
        customer=(cust[order] + lo).astype(np.int64),
        product=prod.astype(np.int64),
        ts=ts[sel],
        event=ev_code.astype(np.int64),
        quantity=quantity,
        amount=amount,
    )


def _event_code(step: I64) -> I64:
    codes = np.array([_VIEW, _CLICK, _CART, _PURCHASE], dtype=np.int64)
    return np.asarray(codes[np.minimum(step, 3)], dtype=np.int64)


def _sigmoid(x: F32) -> F32:
    return np.asarray(1.0 / (1.0 + np.exp(-x)), dtype=np.float32)


def _choose(
    chains: I64,
    owner: I64,
    chain_cat: I64,
    u_pick: F64,
    taste: F32,
    cat: _Catalog,
    product: I64,
    affinity: F32,
) -> None:
    """Sample ``product`` (and record ``affinity``) for the given chains by inverse CDF.

    Each (customer, category) pair's softmax is computed once, in category blocks of at most
    _BLOCK_CELLS cells; the CDF rows are offset by their row number so that one flat
    searchsorted serves every chain of the block.
    """
    if len(chains) == 0:
        return
    k = cat.n_categories
    key = owner[chains] * k + chain_cat[chains]
    pairs, pair_of_chain = np.unique(key, return_inverse=True)
    pair_cat = pairs % k
    pair_owner = pairs // k
    pair_order = np.argsort(pair_cat, kind="stable")
    pair_pos = np.empty(len(pairs), dtype=np.int64)
    pair_pos[pair_order] = np.arange(len(pairs))  # position in category-grouped order
    chain_pos = pair_pos[pair_of_chain]
    chain_order = np.argsort(chain_pos, kind="stable")
    sorted_pos = chain_pos[chain_order]
    cat_bounds = np.searchsorted(pair_cat[pair_order], np.arange(k + 1))

    for c in range(k):  # loop over categories and blocks, each fully vectorized
        p_lo, p_hi = int(cat_bounds[c]), int(cat_bounds[c + 1])
        if p_lo == p_hi:
            continue
        s, t = int(cat.cat_start[c]), int(cat.cat_start[c + 1])
        vecs = cat.vectors[cat.by_cat[s:t]]
        log_pop = cat.log_pop_sorted[s:t]
        rows_per_block = max(1, _BLOCK_CELLS // (t - s))
        for b_lo in range(p_lo, p_hi, rows_per_block):
            b_hi = min(b_lo + rows_per_block, p_hi)
            users = taste[pair_owner[pair_order[b_lo:b_hi]]]
            logits = users @ vecs.T
            logits += log_pop
            logits -= logits.max(axis=1, keepdims=True)
            np.exp(logits, out=logits)
            cdf = np.cumsum(logits, axis=1, dtype=np.float64)
            cdf /= cdf[:, -1:]
            cdf += np.arange(b_hi - b_lo, dtype=np.float64)[:, None]
            c_lo, c_hi = np.searchsorted(sorted_pos, [b_lo, b_hi])
            these = chain_order[c_lo:c_hi]
            row = sorted_pos[c_lo:c_hi] - b_lo
            hit = np.searchsorted(cdf.ravel(), row + u_pick[chains[these]], side="right")
            col = np.clip(hit - row * (t - s), 0, t - s - 1)
            idx = chains[these]
            product[idx] = cat.by_cat[s + col]
            affinity[idx] = np.einsum("ij,ij->i", users[row], vecs[col])
