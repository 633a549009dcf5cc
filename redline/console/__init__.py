"""The terminal console: what an SRE or a developer looks at where no Grafana or Jaeger UI runs.

``redline top`` (:mod:`.top`), ``alerts`` (:mod:`.alerts`), ``logs``
(:mod:`.logs`), ``exemplars`` (:mod:`.exemplars`) and ``trace`` (:mod:`.trace`)
read Prometheus, Alertmanager and Jaeger over their own HTTP APIs
(:mod:`._sources`) and the log files the supervisor writes; :mod:`.logfmt`
turns a service's JSON line into the short line `redline up` shows on a
terminal. The PromQL is :mod:`dashboards.signals`, the dashboards' own.
"""
