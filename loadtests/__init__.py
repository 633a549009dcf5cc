"""Load tests: Locust journeys through the gateway, shapes, thresholds, trace-aware results.

``locust -f loadtests/locustfile.py`` or ``python -m loadtests.run`` (``redline
load``); see loadtests/README.md. Only ``locustfile`` and ``journeys`` import
Locust (which monkey-patches the process with gevent); the rest is plain Python.
"""
