"""The retail vocabulary: categories with their price level, replenishment cycle and title
words, and the parts brand names are made of."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final


@dataclass(frozen=True)
class Category:
    name: str
    price: float  # median price
    cycle_days: float  # replenishment interval; 0 = durable (not re-bought)
    adjectives: tuple[str, ...]
    nouns: tuple[str, ...]
    sizes: tuple[str, ...]

    @property
    def consumable(self) -> bool:
        return self.cycle_days > 0


def _cat(name: str, price: float, cycle: float, adj: str, nouns: str, sizes: str) -> Category:
    return Category(
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

BRAND_HEADS: Final = (
    "Nor", "Vel", "Ast", "Bright", "Cal", "Dun", "Elm", "Fair", "Gold", "Har", "Iron", "Jun",
    "Kin", "Lum", "Mar", "Nova", "Oak", "Pine", "Quin", "Red", "Sil", "Tru", "Ultra", "Vista",
)  # fmt: skip
BRAND_TAILS: Final = (
    "vale", "ora", "field", "stone", "wick", "more", "bury", "ton", "leaf", "crest", "line",
    "wood", "haven", "mark", "lux", "ridge",
)  # fmt: skip


def category_defs(k: int) -> list[tuple[Category, str, float]]:
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
