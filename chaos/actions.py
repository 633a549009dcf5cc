"""Actions: the faults an experiment injects, and how each is taken back.

Chaos Toolkit ``python`` providers (``module: chaos.actions``). Every function
that injects a fault first records in ``ACTIVE_FAULTS`` how to undo it (so an
interruption half-way through injecting still gets it undone; each undo is
harmless when the fault never took), and its counterpart discharges that
record; whatever is still recorded when the experiment ends (failed,
interrupted, or a rollback forgotten) the runner undoes. Signals go to exactly
the pid the stack's state file names (the process ``redline up`` started with
``subprocess.Popen``), never by name.

``mark`` (on the injecting actions) names the instant of injection, so
probes can measure from it: "the breaker opened 2.1 s after
``payments-slow``".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from typing import Any

import httpx

from chaos import load as load_module
from chaos.context import ACTIVE_FAULTS, MARKS, SIGNALLED, Configuration, run_dir, setting, stack
from chaos.proxy import ProxyClient
from services.topology import SERVICES

_TIMEOUT = 5.0


def _mark(name: str | None) -> None:
    """Stamp a fault's mark. Actions stamp it just before they apply the fault:
    whatever the fault causes then comes after the mark. (Stamped after, a
    fast shutdown's first 503s, answered while ``pg_ctl stop`` still waited,
    fell before the mark, and took the exemplars a probe looked for since it.)
    """
    if name:
        MARKS.set(name)


def mark(name: str) -> float:
    """Name this instant, for probes that measure from it."""
    return MARKS.set(name)


# -- fault flags (server side, per service) ----------------------------------------------


def set_faults(
    service: str,
    faults: list[dict[str, Any]],
    mark: str | None = None,
    configuration: Configuration | None = None,
) -> list[dict[str, Any]]:
    """Replace ``service``'s fault flags (``PUT /admin/faults``); see services/chassis/faults.py."""
    info = stack(configuration)
    ACTIVE_FAULTS.add(
        f"faults:{service}",
        f"fault flags on {service}: {faults}",
        lambda: clear_faults(service, configuration),
    )
    url = f"{info.ops_url(service)}/admin/faults"
    _mark(mark)
    r = httpx.put(url, json={"faults": faults}, headers=info.admin_headers, timeout=_TIMEOUT)
    r.raise_for_status()
    result: list[dict[str, Any]] = r.json()["faults"]
    return result


def clear_faults(service: str, configuration: Configuration | None = None) -> int:
    """``DELETE /admin/faults``: every flag off, every hung request released."""
    info = stack(configuration)
    r = httpx.delete(
        f"{info.ops_url(service)}/admin/faults", headers=info.admin_headers, timeout=_TIMEOUT
    )
    r.raise_for_status()
    ACTIVE_FAULTS.discharge(f"faults:{service}")
    return r.status_code


def clear_all_faults(configuration: Configuration | None = None) -> list[str]:
    """Every service's flags off (a rollback that needs no bookkeeping)."""
    cleared = []
    for service in SERVICES:
        with contextlib.suppress(httpx.HTTPError):
            clear_faults(service, configuration)
            cleared.append(service)
    return cleared


# -- the network: toxics in the fault proxy ---------------------------------------------


def _proxy(configuration: Configuration | None) -> ProxyClient:
    url = setting(configuration, "fault_proxy_url")
    if not url:
        raise RuntimeError(
            "no fault proxy configured (fault_proxy_url): start `redline chaos proxy` and "
            "route the dependency through it with `redline up --env ...`"
        )
    return ProxyClient(url)


def add_toxic(
    proxy: str,
    type: str,
    attributes: dict[str, float] | None = None,
    stream: str = "downstream",
    toxicity: float = 1.0,
    name: str | None = None,
    mark: str | None = None,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """Add a toxic to a proxy (latency, bandwidth, slow_close, timeout, reset_peer, limit_data)."""
    client = _proxy(configuration)
    toxic_name = name or f"{type}_{stream}"
    ACTIVE_FAULTS.add(
        f"toxic:{proxy}:{toxic_name}",
        f"{type} toxic on proxy {proxy}: {attributes}",
        lambda: remove_toxic(proxy, toxic_name, configuration),
    )
    _mark(mark)
    return client.add_toxic(
        proxy,
        {
            "type": type,
            "name": toxic_name,
            "stream": stream,
            "toxicity": toxicity,
            "attributes": attributes or {},
        },
    )


def remove_toxic(proxy: str, name: str, configuration: Configuration | None = None) -> bool:
    client = _proxy(configuration)
    present = any(t["name"] == name for t in client.toxics(proxy))
    if present:
        client.remove_toxic(proxy, name)
    ACTIVE_FAULTS.discharge(f"toxic:{proxy}:{name}")
    return present


def reset_proxy(configuration: Configuration | None = None) -> bool:
    """Every toxic removed and every proxy enabled."""
    _proxy(configuration).reset()
    for key in ACTIVE_FAULTS.in_force():
        if key.startswith("toxic:"):
            ACTIVE_FAULTS.discharge(key)
    return True


# -- processes ---------------------------------------------------------------------------


def _pid(service: str, configuration: Configuration | None) -> int:
    pid = stack(configuration).pid(service)
    if pid is None:
        raise RuntimeError(f"the state file names no pid for {service}")
    return pid


def kill_service(
    service: str,
    signal_name: str = "SIGKILL",
    mark: str | None = None,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """Signal the service's process (its pid from the state file); `redline up` restarts it."""
    pid = _pid(service, configuration)
    _mark(mark)
    os.kill(pid, signal.Signals[signal_name])
    SIGNALLED[service] = pid
    return {"service": service, "pid": pid, "signal": signal_name}


def freeze_service(
    service: str, mark: str | None = None, configuration: Configuration | None = None
) -> dict[str, Any]:
    """SIGSTOP: the process keeps its sockets (connections are accepted) but never answers."""
    pid = _pid(service, configuration)
    _FROZEN[service] = pid
    ACTIVE_FAULTS.add(
        f"frozen:{service}", f"{service} (pid {pid}) stopped", lambda: thaw_service(service)
    )
    _mark(mark)
    os.kill(pid, signal.SIGSTOP)
    return {"service": service, "pid": pid}


_FROZEN: dict[str, int] = {}


def _cont(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


def thaw_service(service: str, configuration: Configuration | None = None) -> dict[str, Any]:
    """SIGCONT the very pid that was frozen."""
    pid = _FROZEN.pop(service, None) or _pid(service, configuration)
    _cont(pid)
    ACTIVE_FAULTS.discharge(f"frozen:{service}")
    return {"service": service, "pid": pid}


# -- the resilience admin API ------------------------------------------------------------


def override_breaker(
    service: str,
    breaker: str,
    action: str,
    mark: str | None = None,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """force-open, force-closed or disable a breaker (an operator override); reset undoes it."""
    if action not in ("force-open", "force-closed", "disable"):
        raise ValueError(f"override one of force-open, force-closed, disable; not {action!r}")
    info = stack(configuration)
    ACTIVE_FAULTS.add(
        f"breaker:{service}:{breaker}",
        f"{service}'s {breaker} breaker {action}",
        lambda: reset_breaker(service, breaker, configuration),
    )
    _mark(mark)
    r = httpx.post(
        f"{info.ops_url(service)}/admin/resilience/breakers/{breaker}/{action}",
        headers=info.admin_headers,
        timeout=_TIMEOUT,
    )
    r.raise_for_status()
    result: dict[str, Any] = r.json()
    return result


def reset_breaker(
    service: str, breaker: str, configuration: Configuration | None = None
) -> dict[str, Any]:
    """Back to closed with an empty window: the breaker judges afresh."""
    info = stack(configuration)
    r = httpx.post(
        f"{info.ops_url(service)}/admin/resilience/breakers/{breaker}/reset",
        headers=info.admin_headers,
        timeout=_TIMEOUT,
    )
    r.raise_for_status()
    ACTIVE_FAULTS.discharge(f"breaker:{service}:{breaker}")
    result: dict[str, Any] = r.json()
    return result


# -- the database ------------------------------------------------------------------------


def _postgres(configuration: Configuration | None) -> Any:
    from services.chassis.pgserver import EmbeddedPostgres

    info = stack(configuration)
    return EmbeddedPostgres(info.pg_data_dir, port=info.port("postgres"), host=info.host)


def stop_postgres(
    mark: str | None = None, configuration: Configuration | None = None
) -> dict[str, Any]:
    """Stop the embedded PostgreSQL (fast shutdown: sessions are disconnected)."""
    server = _postgres(configuration)
    pid = server.pid()
    ACTIVE_FAULTS.add(
        "postgres:stopped", "PostgreSQL stopped", lambda: start_postgres(configuration)
    )
    _mark(mark)
    server.stop("fast")
    return {"stopped_pid": pid}


def start_postgres(configuration: Configuration | None = None) -> dict[str, Any]:
    server = _postgres(configuration)
    if not server.running():
        server.start()
    ACTIVE_FAULTS.discharge("postgres:stopped")
    return {"pid": server.pid()}


def terminate_db_connections(
    services: list[str], mark: str | None = None, configuration: Configuration | None = None
) -> dict[str, int]:
    """``pg_terminate_backend`` every session these services opened (their application_name)."""
    import asyncpg

    async def terminate() -> dict[str, int]:
        conn = await asyncpg.connect(stack(configuration).dsn(), timeout=5)
        try:
            rows = await conn.fetch(
                "SELECT application_name AS service, pg_terminate_backend(pid) AS ok "
                "FROM pg_stat_activity WHERE application_name = ANY($1::text[]) "
                "AND pid <> pg_backend_pid()",
                services,
            )
        finally:
            await conn.close()
        counts = dict.fromkeys(services, 0)
        for r in rows:
            counts[r["service"]] += 1 if r["ok"] else 0
        return counts

    _mark(mark)
    return asyncio.run(terminate())


_LOCK_MODES = {
    "ACCESS SHARE",
    "ROW SHARE",
    "ROW EXCLUSIVE",
    "SHARE UPDATE EXCLUSIVE",
    "SHARE",
    "SHARE ROW EXCLUSIVE",
    "EXCLUSIVE",
    "ACCESS EXCLUSIVE",
}
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


class _LockHolder:
    """A transaction holding a table lock, in its own thread, for at most ``max_seconds``."""

    def __init__(self, dsn: str, table: str, mode: str, max_seconds: float) -> None:
        self.dsn, self.table, self.mode, self.max_seconds = dsn, table, mode, max_seconds
        self.locked = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"lock-{table}", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._released: asyncio.Event | None = None
        self.released_early = False

    def release(self) -> None:
        """From any thread: end the transaction now (or as soon as it has the lock)."""
        self.released_early = True
        if self._loop is not None and self._released is not None:
            with contextlib.suppress(RuntimeError):  # its loop already ended
                self._loop.call_soon_threadsafe(self._released.set)

    def _run(self) -> None:
        try:
            asyncio.run(self._hold())
        except BaseException as exc:  # reported to the caller waiting on ``locked``
            self.error = exc
            self.locked.set()

    async def _hold(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(
            self.dsn, timeout=5, server_settings={"application_name": "chaos-lock"}
        )
        try:
            transaction = conn.transaction()
            await transaction.start()
            await conn.execute(f"LOCK TABLE {self.table} IN {self.mode} MODE")
            self._loop, self._released = asyncio.get_running_loop(), asyncio.Event()
            self.locked.set()
            if not self.released_early:  # released while it was still waiting for the lock
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._released.wait(), self.max_seconds)
            await transaction.rollback()
        finally:
            await conn.close()


_LOCKS: dict[str, _LockHolder] = {}


def hold_table_lock(
    service: str,
    table: str,
    mode: str = "ACCESS EXCLUSIVE",
    max_seconds: float = 30.0,
    mark: str | None = None,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """Hold a lock on one of ``service``'s tables: its queries on it wait, holding pool slots.

    Bounded: the transaction ends after ``max_seconds`` even if nobody releases it.
    """
    from services.chassis.app import database_name

    if not _IDENTIFIER.match(table) or mode.upper() not in _LOCK_MODES:
        raise ValueError(f"refusing lock {mode!r} on {table!r}")
    key = f"lock:{service}:{table}"
    if key in _LOCKS:
        raise RuntimeError(f"{table} in {service} is already locked by this experiment")
    holder = _LockHolder(
        stack(configuration).dsn(database_name(service)), table, mode.upper(), max_seconds
    )
    _LOCKS[key] = holder
    ACTIVE_FAULTS.add(
        key, f"{mode} lock on {service}.{table}", lambda: release_table_lock(service, table)
    )
    _mark(mark)
    holder.thread.start()
    if not holder.locked.wait(10) or holder.error is not None:
        release_table_lock(service, table)
        raise RuntimeError(f"could not lock {table}: {holder.error!r}")
    return {"table": table, "mode": mode, "max_seconds": max_seconds}


def release_table_lock(service: str, table: str) -> bool:
    key = f"lock:{service}:{table}"
    holder = _LOCKS.pop(key, None)
    if holder is not None:
        holder.release()
        holder.thread.join(timeout=10)
    ACTIVE_FAULTS.discharge(key)
    return holder is not None


# -- CPU ---------------------------------------------------------------------------------

_HOGS: list[subprocess.Popen[bytes]] = []
_HOG_CODE = (
    "import sys, time\n"
    "end = time.monotonic() + float(sys.argv[1])\n"
    "while time.monotonic() < end:\n"
    "    pass\n"
)


def cpu_hog(
    seconds: float,
    workers: int | None = None,
    mark: str | None = None,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """Busy-loop ``workers`` processes (default: one per core); each exits after ``seconds``."""
    if not 0 < seconds <= 600:
        raise ValueError("a CPU hog runs between 0 and 600 seconds")
    count = workers or os.cpu_count() or 1
    ACTIVE_FAULTS.add("cpu-hog", f"{count} CPU hog(s) for {seconds}s", stop_cpu_hog)
    started = []
    _mark(mark)
    for _ in range(count):
        started.append(subprocess.Popen([sys.executable, "-c", _HOG_CODE, str(seconds)]))
        _HOGS.append(started[-1])
    return {"pids": [p.pid for p in started], "seconds": seconds}


def stop_cpu_hog(configuration: Configuration | None = None) -> int:
    stopped = 0
    while _HOGS:
        proc = _HOGS.pop()
        if proc.poll() is None:
            proc.kill()
            stopped += 1
        proc.wait(timeout=5)
    ACTIVE_FAULTS.discharge("cpu-hog")
    return stopped


# -- the order saga ----------------------------------------------------------------------


def pause_sagas(
    after: list[str], mark: str | None = None, configuration: Configuration | None = None
) -> list[str]:
    """Hold order sagas right after these steps (orders' admin hook), e.g. to crash them there."""
    info = stack(configuration)
    ACTIVE_FAULTS.add(
        "saga-pauses", f"sagas paused after {after}", lambda: resume_sagas(configuration)
    )
    _mark(mark)
    r = httpx.put(
        f"{info.ops_url('orders')}/admin/saga/pauses",
        json={"after": after},
        headers=info.admin_headers,
        timeout=_TIMEOUT,
    )
    r.raise_for_status()
    result: list[str] = r.json()["after"]
    return result


def resume_sagas(configuration: Configuration | None = None) -> int:
    info = stack(configuration)
    r = httpx.delete(
        f"{info.ops_url('orders')}/admin/saga/pauses", headers=info.admin_headers, timeout=_TIMEOUT
    )
    r.raise_for_status()
    ACTIVE_FAULTS.discharge("saga-pauses")
    return r.status_code


# -- background load ---------------------------------------------------------------------


def start_load(
    name: str,
    catalog_rps: float = 0.0,
    order_rps: float = 0.0,
    burst_orders: int = 0,
    direct_orders: bool = False,
    users: int = 3,
    timeout: float = 10.0,
    seed: int | None = None,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """Start open-loop traffic: catalog reads and orders through the gateway.

    ``direct_orders`` sends the orders to the orders service itself, as an
    internal caller would, past the gateway's own bulkhead in front of it.
    """
    info = stack(configuration)
    old = load_module.LOADS.pop(name, None)
    if old is not None:
        old.stop()
    spec = load_module.LoadSpec(
        gateway=info.url("gateway"),
        catalog_rps=catalog_rps,
        order_rps=order_rps,
        burst_orders=burst_orders,
        orders_url=info.url("orders") if direct_orders else None,
        users=users,
        timeout=timeout,
        seed=seed,
    )
    driver = load_module.LoadDriver(name, spec)
    load_module.LOADS[name] = driver
    ACTIVE_FAULTS.add(
        f"load:{name}", f"background load {name}", lambda: stop_load(name, configuration)
    )
    driver.start()
    return {"name": name, "users": len(driver.users)}


def stop_load(name: str, configuration: Configuration | None = None) -> dict[str, Any]:
    """Stop the load, wait for its answers, write its log into the run folder."""
    driver = load_module.get(name)
    summary = driver.stop()
    ACTIVE_FAULTS.discharge(f"load:{name}")
    summary["log"] = str(driver.write_log(run_dir(configuration)))
    return summary


def observe_load(
    name: str, window: str, seconds: float, configuration: Configuration | None = None
) -> dict[str, Any]:
    """Let the load run ``seconds`` more and keep those requests as ``window`` for probes."""
    return load_module.get(name).observe(window, seconds)


# -- operations --------------------------------------------------------------------------


def restart_service(
    service: str,
    rolling: bool = True,
    timeout: float = 60.0,
    mark: str | None = None,
    done_mark: str | None = None,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """`redline restart SERVICE [--rolling]`: each instance drained, stopped, started, ready."""
    from redline.restart import restart_service as restart

    instances = stack(configuration).state.get("instances", {}).get(service, [service])
    if rolling and len(instances) < 2:
        raise RuntimeError(
            f"{service} runs one instance: a rolling restart needs replicas "
            f"(redline up --replicas {service}=2)"
        )
    _mark(mark)
    rows = restart(stack(configuration).state_dir, service, rolling=rolling, timeout=timeout)
    _mark(done_mark)
    return {"service": service, "instances": rows, "seconds": sum(r["seconds"] for r in rows)}
