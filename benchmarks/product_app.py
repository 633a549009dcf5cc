"""A bare Litestar route shaped like inventory's product read, without telemetry.

``python benchmarks/product_app.py PORT`` — one uvicorn worker answering
``GET /products/{product_id}`` with a fixed product (the JSON inventory sends),
the baseline of ``gateway_hop.py``.
"""

from __future__ import annotations

import sys

import orjson
import uvicorn
from litestar import Litestar, Response, get

PRODUCT = orjson.dumps(
    {
        "id": 7,
        "sku": "RL-0007",
        "name": "Product 7",
        "category": "tools",
        "price_cents": 1999,
        "available": 100,
    }
)


@get("/products/{product_id:int}", sync_to_thread=False)
def product(product_id: int) -> Response[bytes]:
    return Response(PRODUCT, media_type="application/json")


if __name__ == "__main__":
    app = Litestar(route_handlers=[product], logging_config=None)
    uvicorn.run(
        app, host="127.0.0.1", port=int(sys.argv[1]), log_config=None, access_log=False, workers=1
    )
