"""Alerting as code: SLOs, the rules generated from them, hand-written symptom alerts.

Layout (see each module's docstring):

* ``slos.py`` — the SLO numbers; ``slo.py`` — their shape and the burn-rate policy;
  ``slo_rules.py`` / ``slo_rule_tests.py`` — rules and promtool tests generated
  from them by ``python -m alerts`` into ``generated/<profile>/`` and
  ``tests/generated/``.
* ``rules/*.yml`` — hand-written symptom and cause alerts; ``tests/*.test.yml``
  their promtool tests; ``runbooks/<Alert>.md`` what to do when one fires.
* ``alertmanager.yml`` and ``alertmanager.py`` (``config_for(webhook_url)``).
* ``metrics_catalog.yaml`` and ``promql.py`` — the metrics rules and panels may read.

For Prometheus configs: ``rule_files(NORMAL)`` in production,
``rule_files(COMPRESSED)`` in live tests and chaos experiments.
"""

from alerts.paths import rule_files
from alerts.slo import COMPRESSED, NORMAL

__all__ = ["COMPRESSED", "NORMAL", "rule_files"]
