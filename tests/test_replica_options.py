"""`redline up --replicas` and `--port` for replicas: parsing and the ports each instance gets."""

from __future__ import annotations

import pytest

from redline.cli import _ports, _replicas
from redline.stack import DEFAULT_PORTS, StackError, StackOptions, with_replica_ports
from services.topology import SERVICES, instance_of


def test_replicas_parse_into_counts_per_service() -> None:
    assert _replicas("inventory=2,orders=3") == {"inventory": 2, "orders": 3}
    assert _replicas(None) == {}


@pytest.mark.parametrize("value", ["inventory", "nosuch=2", "inventory=0", "inventory=10", "a=b"])
def test_a_bad_replicas_value_is_a_one_line_error(value: str) -> None:
    with pytest.raises(StackError, match="--replicas"):
        _replicas(value)


def test_a_replica_gets_the_services_port_plus_ten_per_instance_unless_given() -> None:
    ports = with_replica_ports(
        _ports(["inventory=18002", "inventory-3=19000"], {"inventory": 3}), {"inventory": 3}
    )
    assert ports["inventory"] == 18002
    assert ports["inventory-2"] == 18012
    assert ports["inventory-3"] == 19000
    assert ports["inventory-2-ops"] == DEFAULT_PORTS["inventory-ops"] + 10
    assert "orders-2" not in ports
    # Every default port stays distinct with the most replicas of everything.
    most = with_replica_ports(dict(DEFAULT_PORTS), dict.fromkeys(SERVICES, 9))
    service_ports = [p for n, p in most.items() if instance_of(n.removesuffix("-ops"))]
    assert len(service_ports) == len(set(service_ports)) == len(SERVICES) * 9 * 2


def test_a_replicas_port_is_refused_unless_the_replica_is_asked_for() -> None:
    with pytest.raises(StackError, match="inventory-2"):
        _ports(["inventory-2=18012"], {})
    assert _ports(["inventory-2-ops=18112"], {"inventory": 2})["inventory-2-ops"] == 18112


def test_instances_are_named_after_their_service() -> None:
    options = StackOptions(replicas={"orders": 2})
    assert options.instances("orders") == ["orders", "orders-2"]
    assert options.instances("inventory") == ["inventory"]
    assert instance_of("orders-2") == ("orders", 2)
    assert instance_of("orders") == ("orders", 1)
    assert instance_of("orders-ops") is None
    assert instance_of("nosuch-2") is None
