"""`redline up --replicas`: several instances of a service, balanced by their callers.

One stack for the module, with two instances of inventory, orders, payments
and the gateway: each its own process, port, ops port and Prometheus target;
callers spread their calls over the instances and their spans name the one
that served; a killed orders instance's sagas are finished by the others,
each exactly once; `redline restart` replaces every instance. The
zero-error operations (a replica killed, a rolling restart) run in `make
test` on the shared stack's two inventory instances
(tests/test_replica_experiments.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from services.topology import SERVICES
from tests.harness import (
    ADMIN_HEADERS,
    ROOT,
    Stack,
    User,
    prom_query,
    sign_up,
    wait_until,
)
from tests.otlp_receiver import OtlpReceiver

# ~2 minutes (a stack of 13 processes started and stopped): `make
# test-replicas`, not `make test`.
pytestmark = [pytest.mark.slow, pytest.mark.replicas]

# Three of orders: when one is killed, two live instances race to recover its sagas.
REPLICAS = {"gateway": 2, "inventory": 2, "orders": 3, "payments": 2}
REPLICATED = tuple(REPLICAS)


def instances(name: str) -> list[str]:
    return SERVICES[name].instance_names(REPLICAS.get(name, 1))


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, otlp: OtlpReceiver) -> Iterator[Stack]:
    s = Stack.build(
        tmp_path_factory.mktemp("replicas"),
        otlp_endpoint=otlp.endpoint,
        replicas=REPLICAS,
        extra=[
            "--env", "payments:REDLINE_PROCESSOR_DECLINE_RATE=0",
            # A crashed saga is taken over after 2 s rather than 15 s.
            "--env", "orders:REDLINE_SAGA_LEASE_SECONDS=2",
            "--env", "orders:REDLINE_SAGA_RECOVERY_INTERVAL_SECONDS=0.5",
        ],
    )  # fmt: skip
    s.start(timeout=240)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def user(replicas: Stack) -> User:
    return sign_up(replicas.gateway)


def order(base: str, user: User, product_id: int, path: str = "/api/v1/orders") -> httpx.Response:
    return httpx.post(
        f"{base}{path}",
        json={"items": [{"product_id": product_id, "quantity": 1}]},
        headers={**user.headers, "idempotency-key": str(uuid.uuid4())},
        timeout=15,
    )


def test_every_instance_is_a_component_a_status_row_and_a_prometheus_target(
    replicas: Stack,
) -> None:
    state = replicas.state() or {}
    for name in REPLICATED:
        assert state["instances"][name] == instances(name)
    assert state["instances"]["orders"] == ["orders", "orders-2", "orders-3"]
    assert state["instances"]["accounts"] == ["accounts"]
    status = subprocess.run(
        [sys.executable, "-m", "redline", "status", "--state-dir", str(replicas.state_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert status.returncode == 0, status.stderr
    rows = {ln.split()[0]: ln.split() for ln in status.stdout.splitlines()[2:]}
    for name in REPLICATED:
        for instance in instances(name):
            assert rows[instance][2:4] == ["running", "ready"], rows[instance]
            assert rows[instance][1] == str(state["components"][instance]["pid"])
    assert len({rows[n][1] for n in ("inventory", "inventory-2")}) == 2

    def scraped() -> dict[str, set[str]]:
        up = prom_query(replicas.prometheus, "up == 1")
        out: dict[str, set[str]] = {}
        for r in up:
            out.setdefault(r["metric"]["job"], set()).add(r["metric"]["instance"])
        wanted = {n: len(instances(n)) for n in SERVICES}
        return out if all(len(out.get(n, ())) == k for n, k in wanted.items()) else {}

    jobs = wait_until(scraped, timeout=30, message="not every instance is a target")
    for name in REPLICATED:
        assert jobs[name] == {f"127.0.0.1:{replicas.ports[i]}" for i in instances(name)}
    assert len(jobs["accounts"]) == 1


def test_callers_spread_calls_over_the_instances_and_spans_name_the_one_that_served(
    replicas: Stack, user: User, otlp: OtlpReceiver
) -> None:
    gateways = [replicas.url("gateway"), replicas.url("gateway-2")]
    for i in range(12):
        assert order(gateways[i % 2], user, 3 + i % 5).status_code == 201
    inventory_ports = {replicas.ports["inventory"], replicas.ports["inventory-2"]}
    payments_ports = {replicas.ports["payments"], replicas.ports["payments-2"]}

    def served(peer: str, ports: set[int]) -> set[int]:
        spans = otlp.find(
            lambda s: (
                s.kind == "CLIENT"
                and s.service_name == "orders"
                and s.attributes.get("peer.service") == peer
            )
        )
        seen = {int(s.attributes["server.port"]) for s in spans}
        return seen if seen >= ports else set()

    assert wait_until(lambda: served("inventory", inventory_ports), timeout=20) == inventory_ports
    assert wait_until(lambda: served("payments", payments_ports), timeout=20) == payments_ports
    # Each orders instance counts its attempts per endpoint, labelled host:port.
    per_endpoint: Counter[str] = Counter()
    for instance in instances("orders"):
        text = httpx.get(f"{replicas.url(instance)}/metrics", timeout=5).text
        for line in text.splitlines():
            if (
                line.startswith("resilience_endpoint_requests_total{")
                and 'balancer="inventory"' in line
            ):
                endpoint = line.split('endpoint="', 1)[1].split('"', 1)[0]
                per_endpoint[endpoint] += int(float(line.rsplit(" ", 1)[1]))
    assert set(per_endpoint) == {f"127.0.0.1:{p}" for p in inventory_ports}
    assert all(count > 0 for count in per_endpoint.values()), per_endpoint


def test_a_killed_orders_instance_has_its_sagas_finished_exactly_once(
    replicas: Stack, user: User
) -> None:
    """Sagas held after the charge on one of three orders instances, then
    SIGKILL: the two others (and the dead one's successor, once `redline up`
    has restarted it) poll the same table every 0.5 s and race for the
    expired leases; each order is recovered by exactly one of them,
    committed, and charged once."""
    victim = replicas.url("orders")
    ops = f"http://127.0.0.1:{replicas.ports['orders-ops']}"
    log = replicas.state_dir / "logs" / "orders.log"
    paused_before = log.read_text().count('"event":"saga paused"')
    pauses = f"{ops}/admin/saga/pauses"
    assert httpx.put(pauses, json={"after": ["charged"]}, headers=ADMIN_HEADERS).status_code == 200
    answers: list[httpx.Response | Exception] = []

    def place(product_id: int) -> None:
        try:
            answers.append(order(victim, user, product_id, path="/orders"))
        except httpx.HTTPError as exc:
            answers.append(exc)

    products = (40, 41, 42, 43, 44, 45)
    clients = [threading.Thread(target=place, args=(p,)) for p in products]
    for c in clients:
        c.start()
    wait_until(
        lambda: log.read_text().count('"event":"saga paused"') - paused_before >= len(products),
        timeout=20,
        message="the sagas never reached the pause",
    )
    pid = (replicas.state() or {})["components"]["orders"]["pid"]
    subprocess.run(["kill", "-9", str(pid)], check=True)
    for c in clients:
        c.join(timeout=20)
    assert all(not isinstance(a, httpx.Response) for a in answers), answers  # the crash cut them

    def mine() -> list[dict[str, Any]]:
        page = httpx.get(
            f"{replicas.gateway}/api/v1/orders", params={"limit": 50}, headers=user.headers
        ).json()["items"]
        return [o for o in page if o["items"][0]["product_id"] in products]

    def all_finished() -> list[dict[str, Any]] | None:
        found = mine()
        done = len(found) == len(products) and all(o["status"] != "pending" for o in found)
        return found if done else None

    finished = wait_until(all_finished, timeout=40, message="the paused sagas were not finished")
    ids = {o["id"] for o in finished}
    assert {o["status"] for o in finished} == {"confirmed"}
    # Recovered exactly once each, whichever instance leased it.
    recovered: Counter[str] = Counter()
    by_instance: Counter[str] = Counter()
    for instance in instances("orders"):
        for line in (replicas.state_dir / "logs" / f"{instance}.log").read_text().splitlines():
            if '"event":"saga recovered"' in line:
                entry = json.loads(line)
                if entry["order_id"] in ids:
                    recovered[entry["order_id"]] += 1
                    by_instance[instance] += 1
    assert recovered == Counter(dict.fromkeys(ids, 1)), recovered
    print(f"sagas recovered per orders instance: {dict(by_instance)}")
    for order_id in ids:
        charges = [
            httpx.get(f"{replicas.url(p)}/charges/{order_id}", timeout=5)
            for p in ("payments", "payments-2")
        ]
        assert {c.status_code for c in charges} == {200}  # one database, both see it
        assert charges[0].json()["status"] == "charged"
        reservation = httpx.get(f"{replicas.url('inventory')}/reservations/{order_id}").json()
        assert reservation["status"] == "committed"


def test_redline_restart_replaces_every_instance_of_a_service(replicas: Stack) -> None:
    """The command line, without --rolling: every payments instance at once, each ready again."""
    before = {i: (replicas.state() or {})["components"][i]["pid"] for i in instances("payments")}
    result = subprocess.run(
        [
            sys.executable, "-m", "redline", "restart", "payments",
            "--state-dir", str(replicas.state_dir),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    after = {i: (replicas.state() or {})["components"][i]["pid"] for i in instances("payments")}
    assert all(after[i] != before[i] for i in before), (before, after)
    for instance in instances("payments"):
        assert f"{instance}: pid {before[instance]} -> {after[instance]}" in result.stdout
        assert httpx.get(f"{replicas.url(instance)}/health/ready", timeout=5).status_code == 200
    unknown = subprocess.run(
        [
            sys.executable,
            "-m",
            "redline",
            "restart",
            "nosuch",
            "--state-dir",
            str(replicas.state_dir),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unknown.returncode == 2  # argparse: not a service
