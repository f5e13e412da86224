"""Python handlers of the ETL example (queue "py"):

    python3 -m weft_worker --address 127.0.0.1:7233 --queue py --handlers examples/handlers/python/handlers.py

(with workers/python/src on PYTHONPATH and grpcio installed, e.g. in workers/python/.venv).
The TypeScript stand-in in examples/handlers/ts/fallback.ts computes the same result.
"""

from __future__ import annotations

from typing import Any

# Exchange rates to EUR in basis points: integer math gives the same cents in every language.
RATES_BP = {"EUR": 10_000, "USD": 9_000, "GBP": 11_500}


def transform(_input: Any, ctx: Any) -> dict[str, Any]:
    """Drops the orders without an amount and converts the rest to EUR cents."""
    extracted = ctx.parent_outputs["extract"]
    orders = extracted["orders"]
    kept = [o for o in orders if o["amount_cents"] > 0]
    converted = [
        {"id": o["id"], "customer": o["customer"], "eur_cents": o["amount_cents"] * RATES_BP[o["currency"]] // 10_000}
        for o in kept
    ]
    return {"date": extracted["date"], "orders": converted, "dropped": len(orders) - len(kept)}


handlers = {"transform": transform}
