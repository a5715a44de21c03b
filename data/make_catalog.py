"""Write data/orders.txt: a synthetic order-item catalog in the book's style.

One line per ordered item: brand, product line, variant, size with unit,
packaging (e.g. ``蒙牛 特仑苏 纯牛奶 250ml×12盒 整箱``). Deterministic
(fixed seed); popular items repeat, as they do in real order data.

    python data/make_catalog.py
"""

from __future__ import annotations

import random
from pathlib import Path

from catalog_lists import BRANDS, CATEGORIES

SEED = 20240917
LINES = 22_000
DOUBLED_SPACE = 0.2
OUT = Path(__file__).with_name("orders.txt")


def items(rng: random.Random) -> list[str]:
    """Every brand × line × variant, each with one size and packaging drawn for it."""
    out = []
    for brand, (brand_category, lines) in BRANDS.items():
        for line, variants in lines.items():
            category = brand_category
            if variants.startswith("@"):
                category, variants = variants[1:].split(":", 1)
            sizes, packs = CATEGORIES[category]
            for variant in (variants.split("/") if variants else [""]):
                for size, unit, counts in rng.sample(sizes, k=min(3, len(sizes))):
                    count = rng.choice(counts)
                    amount = size if count == 1 else f"{size}×{count}{unit}"
                    words = [brand, line, variant, amount, rng.choice(packs)]
                    out.append(" ".join(w for w in words if w))
    return out


def main() -> None:
    rng = random.Random(SEED)
    pool = items(rng)
    # Zipf-like popularity: a few items are ordered often, most rarely.
    weights = [1.0 / (rank + 1) ** 0.6 for rank in range(len(pool))]
    rng.shuffle(pool)
    orders = rng.choices(pool, weights=weights, k=LINES)
    # Order data typed by people is irregular: about one line in five has a doubled
    # space after the brand. It also matters to the model: cl100k glues a space to the
    # word after it, so a prompt ending in a space ("农夫山泉 ") ends in a lone-space
    # token, which otherwise appears only before sizes ("… 500ml").
    orders = [o.replace(" ", "  ", 1) if rng.random() < DOUBLED_SPACE else o for o in orders]
    OUT.write_text("\n".join(orders) + "\n", encoding="utf-8")
    lines = sum(len(v[1]) for v in BRANDS.values())
    print(f"{OUT}: {LINES} lines, {len(BRANDS)} brands, {lines} product lines, "
          f"{len(pool)} distinct items, {OUT.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
