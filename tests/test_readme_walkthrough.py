"""The README's "Try it" commands, read from the README itself, against a fresh stack and a reused one.

Every ``sh`` block of the section runs as one bash script (``set -e``), in
order, with three changes a test needs and a reader does not:

* the gateway's address is the test stack's (``127.0.0.1:8000`` → a free port),
  and ``REDLINE_STATE_DIR`` points every ``redline`` command at the test stack;
* ``redline top`` gets ``--once``: without a terminal it would print forever;
* ``redline trace`` may end 1 where the stack runs no Jaeger (no Go to build
  it), and must then say so.

The stack itself differs in one way: its card processor declines no
``pm_card_visa`` charge at random (2 % do for a reader, which the README says),
so the order the checks follow is always confirmed.

"Reused" is the walkthrough run a second time on the same state folder: the
database holds the first run's user, orders and sold stock, which is what
broke the walkthrough before. It runs on the same stack, not after a
`redline down`/`up`: a second start would double the test's ~45 s. The stack
runs detached, as from a second terminal, and `redline down` ends the test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from redline.state import pid_alive
from services.topology import SERVICES
from tests.harness import FAST_PASSWORD_HASHING, NO_RANDOM_DECLINES, ROOT, Stack

pytestmark = pytest.mark.slow

README = ROOT / "README.md"


def try_it_script() -> str:
    text = README.read_text()
    start = text.index("## Try it\n")
    section = text[start : text.index("\n## ", start + 1)]
    blocks = re.findall(r"^```sh\n(.*?)^```", section, re.S | re.M)
    assert len(blocks) >= 3, "the walkthrough's shell blocks"
    return "\n".join(blocks)


def adapted(script: str, stack: Stack) -> str:
    assert "127.0.0.1:8000" in script
    assert re.search(r"^redline top\b", script, re.M)
    assert re.search(r"^redline trace\b", script, re.M)
    script = script.replace("127.0.0.1:8000", f"127.0.0.1:{stack.ports['gateway']}")
    script = re.sub(r"^redline top\b", "redline top --once", script, flags=re.M)
    return re.sub(
        r"^(redline trace [^#\n]*?)\s*(#.*)?$",
        r'\1 || echo "redline trace ended $?"',
        script,
        flags=re.M,
    )


def walk(stack: Stack) -> str:
    run = subprocess.run(
        ["bash", "-c", "set -e -o pipefail\n" + adapted(try_it_script(), stack)],
        cwd=ROOT,
        env={**os.environ, "REDLINE_STATE_DIR": str(stack.state_dir)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    out = run.stdout + run.stderr
    order = re.search(r"^order ([0-9a-f-]{36})$", run.stdout, re.M)
    assert order, out
    assert re.search(r"^  supervisor +\d+ running", run.stdout, re.M), "status lists pids"
    assert re.search(r"^slo gateway-availability objective=99.5%", run.stdout, re.M), "top ran"
    assert f'"path":"/reservations/{order[1]}/commit"' in run.stdout, "logs found the order"
    if "jaeger" not in (stack.state() or {}).get("components", {}):
        assert "redline trace ended 1" in out
        assert "Jaeger is not reachable" in out
    else:
        assert "* on the critical path" in out
    return out


def redline(*args: str, stack: Stack) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "redline", *args, "--state-dir", str(stack.state_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_detach_then_the_walkthrough_twice_then_down_stops_everything_in_reverse_order(
    tmp_path: Path,
) -> None:
    """As a reader runs it: `up --detach`, the walkthrough (fresh, then reused), `down`.

    One stack for both stories: each start costs the suite ~30 s.
    """
    # No random declines: the checks below follow a confirmed order's commit.
    stack = Stack.build(tmp_path, otlp_endpoint=None, extra=[*NO_RANDOM_DECLINES])
    env = {**os.environ, **FAST_PASSWORD_HASHING}
    up = subprocess.run(
        [*stack.argv(), "--detach"], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env
    )
    assert up.returncode == 0, up.stdout + up.stderr
    assert "gateway" in up.stdout
    pids = stack.pids()
    try:
        walk(stack)
        again = walk(stack)
        # Registration no longer says whether the address was taken (issue 15):
        # the second run meets the first run's Ada, signs in and orders again.
        assert "If the address was free" in again, again
        assert again.count("order ") >= 1, again
        assert redline("status", stack=stack).returncode == 0
    finally:
        down = redline("down", stack=stack)
    assert down.returncode == 0, down.stderr
    assert set(pids) >= {*SERVICES, "prometheus", "alertmanager", "postgres"}
    still = {name: pid for name, pid in pids.items() if pid_alive(pid)}
    assert not still, f"left running: {still}"
    log = (stack.state_dir / "stack.log").read_text()
    stopped = ("prometheus", "alertmanager", "gateway", "orders", "inventory", "postgres")
    order = [log.index(f"stopped {name}") for name in stopped]
    assert order == sorted(order), "stopped in reverse start order"
    assert redline("status", stack=stack).returncode == 3, "status says nothing runs"
