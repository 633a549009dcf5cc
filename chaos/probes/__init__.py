"""Probes: what an experiment measures, against the API, Prometheus, Alertmanager and traces.

Chaos Toolkit ``python`` providers (``module: chaos.probes``). Each returns
a value the experiment's tolerance judges: a number, a string, or a dict
whose ``target`` key the tolerance names (``{type: range, target: seconds,
range: [0, 15]}``). Probes that wait ("the breaker opens within 15 s")
return how long it took, or ``None`` in the target when it never happened,
so a violated tolerance says by how much.

One module per kind of evidence — ``api``, ``guards`` (breakers and
bulkheads), ``prometheus``, ``alerts``, ``dashboards``, ``traces``,
``ledger``, ``load`` — every probe re-exported here, so an experiment names
``module: chaos.probes`` and the function, whichever module holds it.
"""

from chaos.probes._common import ProbeSkipped
from chaos.probes.alerts import alert_fires, alertmanager_alerts, alerts_firing
from chaos.probes.api import (
    fault_proxy,
    faults_active,
    health,
    health_while,
    pid_changed,
    restarts,
    services_ready,
    toxics_active,
)
from chaos.probes.dashboards import DASHBOARDS, panel_shows
from chaos.probes.guards import (
    breaker_reaches,
    breaker_state,
    breakers_closed,
    bulkhead_peak,
    resilience,
)
from chaos.probes.ledger import audit_orders, ledger_balance, orders_settle, stock_ledger
from chaos.probes.load import (
    canary_orders,
    catalog_answers,
    load_between,
    load_compare,
    load_window,
)
from chaos.probes.prometheus import (
    Samples,
    metrics_flowing,
    prom_query,
    promql,
    promql_eventually,
    retry_amplification,
    retry_counters,
    scrape,
    service_metric,
)
from chaos.probes.traces import trace_shows

__all__ = [
    "DASHBOARDS",
    "ProbeSkipped",
    "Samples",
    "alert_fires",
    "alertmanager_alerts",
    "alerts_firing",
    "audit_orders",
    "breaker_reaches",
    "breaker_state",
    "breakers_closed",
    "bulkhead_peak",
    "canary_orders",
    "catalog_answers",
    "fault_proxy",
    "faults_active",
    "health",
    "health_while",
    "ledger_balance",
    "load_between",
    "load_compare",
    "load_window",
    "metrics_flowing",
    "orders_settle",
    "panel_shows",
    "pid_changed",
    "prom_query",
    "promql",
    "promql_eventually",
    "resilience",
    "restarts",
    "retry_amplification",
    "retry_counters",
    "scrape",
    "service_metric",
    "services_ready",
    "stock_ledger",
    "toxics_active",
    "trace_shows",
]
