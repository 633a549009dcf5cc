"""Probe and action functions for testing the runner without a stack."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from chaos.context import ACTIVE_FAULTS
from chaos.probes import ProbeSkipped

CALLS: list[str] = []


def inject(fault: str) -> str:
    """A fault that records its injection and knows how to undo itself."""
    CALLS.append(f"inject {fault}")
    ACTIVE_FAULTS.add(f"fake:{fault}", f"fake fault {fault}", lambda: CALLS.append(f"undo {fault}"))
    return fault


def revert(fault: str) -> None:
    CALLS.append(f"revert {fault}")
    ACTIVE_FAULTS.discharge(f"fake:{fault}")


def faults_in_force() -> int:
    return len(ACTIVE_FAULTS.in_force())


def value(result: Any) -> Any:
    return result


def echo_configuration(key: str, configuration: dict[str, Any] | None = None) -> Any:
    return (configuration or {}).get(key)


def boom() -> None:
    raise RuntimeError("boom")


def skip() -> None:
    raise ProbeSkipped("no backend configured")


def ctrl_c() -> None:
    raise KeyboardInterrupt


def terminate_me(seconds: float = 5.0) -> None:
    """SIGTERM to this very process, then wait: the runner's handler must cut the wait short."""
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(seconds)
    CALLS.append("slept through SIGTERM")


def interrupt_during_rollback(fault: str) -> None:
    """A rollback step that receives Ctrl-C while it works; the rest must still run."""
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)
    revert(fault)


def is_positive(value: float) -> bool:
    return value > 0
