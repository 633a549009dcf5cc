"""Load tests: Locust journeys and open-model arrivals through the gateway, shapes,
thresholds, trace-aware results, and comparisons between runs.

``locust -f loadtests/locustfile.py`` or ``python -m loadtests.run`` (``redline
load``, ``redline load compare``); see loadtests/README.md. Only ``locustfile``,
``journeys`` and ``arrivals`` import Locust (which monkey-patches the process
with gevent); the rest is plain Python.
"""
