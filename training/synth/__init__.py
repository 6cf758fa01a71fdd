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

Modules, one job each: `config` (SynthConfig, World, schemas), `vocabulary` (category and brand
words), `catalog`, `personas`, `customers`, `season` (time), `simulate` (one chunk's
interactions), `generator` (`generate`), `writer` (`write_world`) and `arrays` (array types).
"""

from training.synth.config import (
    CATALOG_SCHEMA,
    CUSTOMERS_SCHEMA,
    INTERACTIONS_SCHEMA,
    TIERS,
    SynthConfig,
    World,
)
from training.synth.generator import generate
from training.synth.writer import write_world

__all__ = [
    "CATALOG_SCHEMA",
    "CUSTOMERS_SCHEMA",
    "INTERACTIONS_SCHEMA",
    "TIERS",
    "SynthConfig",
    "World",
    "generate",
    "write_world",
]
