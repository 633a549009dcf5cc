"""Chaos experiments for Redline: faults, probes, a runner, a fault proxy.

The experiments are Chaos Toolkit files in ``chaos/experiments``; their
probes and actions are the functions in ``chaos.probes`` and
``chaos.actions``; ``chaos.runner`` runs them without the ``chaos`` CLI and
``chaos.cli`` is ``redline chaos``. See chaos/README.md.
"""
