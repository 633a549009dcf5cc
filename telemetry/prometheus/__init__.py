"""Prometheus and Alertmanager configuration: one renderer for both stacks.

:mod:`telemetry.prometheus.config` renders ``redline up``'s config;
:mod:`telemetry.prometheus.docker` renders ``prometheus.docker.yml`` beside
this module, the docker compose config, with the same code.
"""
