"""Prometheus and Alertmanager configuration: the Docker file and the native renderer.

``prometheus.docker.yml`` beside this module is the docker compose config;
:mod:`telemetry.prometheus.config` renders the same shape for ``redline up``.
"""
