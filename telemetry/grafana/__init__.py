"""Grafana's provisioning files (``provisioning/``), for docker compose and ``redline up`` alike."""
