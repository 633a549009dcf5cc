"""Deployment descriptions of Redline beyond docker compose."""
