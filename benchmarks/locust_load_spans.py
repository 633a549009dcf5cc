"""benchmarks/load_spans.py's locustfile: one product page over and over, through the load
test's own request path and listeners (the trace recorder, and the request spans when an
OTLP endpoint is set), as ``redline load`` runs them."""

from __future__ import annotations

from locust_product_page import ProductPage

import loadtests.locustfile  # noqa: F401  (its listeners)

__all__ = ["ProductPage"]
