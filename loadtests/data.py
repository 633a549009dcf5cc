"""What simulated shoppers type and click, shaped like real traffic.

The catalog is the seeded one (services/inventory/migrations/0002_seed_catalog.sql):
ids 1..320, ten categories, every 25th product a limited edition of 3-7 units.
Popularity is skewed (a Zipf-like law over a fixed shuffle of the ids), so a
few product pages get most views, as in any shop; searches are mostly for
things the shop sells, sometimes for things it does not.
"""

from __future__ import annotations

import bisect
import itertools
import random
import uuid

PRODUCT_IDS = range(1, 321)
LIMITED_EDITIONS = tuple(i for i in PRODUCT_IDS if i % 25 == 0)
REGULAR_PRODUCTS = tuple(i for i in PRODUCT_IDS if i % 25 != 0)
CATEGORIES = (
    "Kitchen", "Outdoor", "Office", "Electronics", "Apparel",
    "Books", "Toys", "Garden", "Sports", "Home",
)  # fmt: skip
SEARCH_TERMS = (
    "kettle", "knife", "skillet", "french press", "dutch oven", "backpack", "tent",
    "sleeping bag", "headlamp", "lamp", "fountain pen", "chair", "keyboard", "earbuds",
    "charger", "webcam", "speaker", "power bank", "socks", "jacket", "t-shirt", "beanie",
    "cookbook", "atlas", "novel", "puzzle", "board game", "kite", "gloves", "watering can",
    "trowel", "yoga mat", "kettlebell", "tennis", "goggles", "blanket", "candle", "vase",
    "clock", "towel", "pro", "compact", "heritage", "classic",
)  # fmt: skip
# Searches that find nothing are part of real traffic (and of the query plan).
NO_HIT_TERMS = ("espresso machine", "drone", "snowboard", "gift card", "kettel")
VISA = "pm_card_visa"
DECLINING_CARDS = ("pm_card_chargeDeclined", "pm_card_insufficientFunds")
PASSWORD = "load-test-password-1"  # noqa: S105 (a throw-away account's password)


def _popularity() -> tuple[list[int], list[float]]:
    ids = list(PRODUCT_IDS)
    random.Random(7).shuffle(ids)  # the same favourites in every run and worker
    weights = [1 / (rank + 1) ** 1.1 for rank in range(len(ids))]
    return ids, list(itertools.accumulate(weights))


_BY_POPULARITY, _CUMULATIVE = _popularity()


def popular_product() -> int:
    """A product id, the popular ones far more often."""
    r = random.random() * _CUMULATIVE[-1]
    return _BY_POPULARITY[min(bisect.bisect_left(_CUMULATIVE, r), len(_BY_POPULARITY) - 1)]


def regular_product() -> int:
    """A popular product that is not a limited edition (plenty of stock)."""
    while (product := popular_product()) % 25 == 0:
        pass
    return product


def search_term() -> str:
    return random.choice(NO_HIT_TERMS) if random.random() < 0.1 else random.choice(SEARCH_TERMS)


def new_email() -> str:
    """Unique across processes and runs; example.com never receives mail."""
    return f"load-{uuid.uuid4().hex[:16]}@example.com"


def idempotency_key() -> str:
    return str(uuid.uuid4())
