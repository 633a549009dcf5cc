"""The resilient client's transport: httpx's API over aiohttp's connection pool.

Why: httpx's own transport (httpcore on anyio) costs several hundred µs of
CPU per request, most of it layers of anyio, sniffio and h11 bookkeeping
(encode/httpx#3215, open); aiohttp's parser and pool are in C and cost a
fraction of that. ``benchmarks/http_client.py`` prints the three side by side.
httpx stays the API: the telemetry transport, the retrier and the services
speak ``httpx.Request`` and ``httpx.Response``.

Why not the ``httpx-aiohttp`` package: it maps ``ServerDisconnectedError``,
an answer lost *after* the request was sent, to ``httpx.ConnectTimeout``,
which says the request never left. The resilient client tells those apart
(a charge whose answer was lost must be refunded, one that never left need
not), so the mapping here follows what httpx's own transport raises:

    connecting failed or timed out (pool wait included) -> ConnectError / ConnectTimeout
    no answer in time                                   -> ReadTimeout
    peer closed without a (complete) answer, bad HTTP   -> RemoteProtocolError
    connection reset or another socket error after connecting -> ReadError
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import aiohttp
import httpx
from yarl import URL

if TYPE_CHECKING:
    from multidict import CIMultiDictProxy

# Below uvicorn's default keep-alive (5 s), so the client drops an idle
# connection before the server does, not in the middle of sending on it.
KEEPALIVE_SECONDS = 4.0
_TOTAL_GRACE_SECONDS = 0.05
# Set by aiohttp itself from the body it sends.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding"})


@contextmanager
def _mapped_errors(request: httpx.Request | None) -> Iterator[None]:
    """Re-raise aiohttp's errors as the httpx errors httpx's own transport raises."""
    try:
        yield
    except (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError) as exc:
        # Checked first: both are also OSErrors/timeouts, but nothing was sent.
        kind: type[httpx.TransportError] = (
            httpx.ConnectTimeout
            if isinstance(exc, aiohttp.ConnectionTimeoutError)
            else httpx.ConnectError
        )
        raise kind(str(exc) or type(exc).__name__, request=request) from exc
    except (
        aiohttp.ServerDisconnectedError,
        aiohttp.ClientPayloadError,
        aiohttp.ClientResponseError,  # an answer aiohttp could not parse
    ) as exc:
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc
    except TimeoutError as exc:  # aiohttp's socket read and total timeouts are TimeoutErrors
        raise httpx.ReadTimeout(str(exc) or "timed out", request=request) from exc
    except (aiohttp.ClientConnectionError, OSError) as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc


class WireResponse:
    """An answer read whole, without httpx's ``Response`` model (about 60 µs less a call).

    ``status_code``, ``headers`` (case-insensitive ``get``) and ``content`` are
    what the resilient client's guards and the gateway's relay read, with the
    same names as on ``httpx.Response``.
    """

    __slots__ = ("content", "headers", "raw_headers", "reason", "status_code")

    def __init__(
        self,
        status_code: int,
        headers: CIMultiDictProxy[str],
        raw_headers: tuple[tuple[bytes, bytes], ...],
        content: bytes,
        reason: str,
    ) -> None:
        self.status_code = status_code
        self.headers = headers
        self.raw_headers = raw_headers
        self.content = content
        self.reason = reason

    def json(self) -> Any:
        """The body as JSON (``ValueError`` if it is not), as ``httpx.Response.json``."""
        return json.loads(self.content)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session (one keep-alive pool) per transport, opened on first use.

    Bodies are read in full before the response is returned: every caller of
    the resilient client reads them anyway, and a response that holds no
    connection can be handed around (relayed, retried, logged) freely.
    """

    def __init__(self, *, max_connections: int, keepalive_seconds: float = KEEPALIVE_SECONDS):
        self._max_connections = max_connections
        self._keepalive = keepalive_seconds
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Made here, not in __init__: a session belongs to the running event loop.
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, limit_per_host=0, keepalive_timeout=self._keepalive
        )
        # trust_env=False: calls between services do not go through HTTP(S)_PROXY,
        # and aiohttp would rescan the environment on every request to find out.
        # No cookie jar: services keep no state between calls. No decompression:
        # httpx.Response decodes the body itself, from its Content-Encoding.
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        # One attempt is one request on the wire: retries are the resilient
        # client's to decide, count against its budget and trace. aiohttp would
        # otherwise resend an idempotent request once on a broken connection,
        # unseen (no public switch; the attribute is read per request).
        self._session._retry_connection = False
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        limits = request.extensions.get("timeout", {})
        headers = [
            (name, value)
            for name, value in request.headers.multi_items()
            if name not in _FRAMING_HEADERS
        ]
        body = await request.aread()
        response = await self.send(
            request.method,
            str(request.url),
            headers,
            body or None,
            pool=limits.get("pool"),
            connect=limits.get("connect"),
            read=limits.get("read"),
            total=max((t for t in limits.values() if t is not None), default=None),
            request=request,
        )
        return httpx.Response(
            response.status_code,
            headers=response.raw_headers,
            content=response.content,
            request=request,
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": response.reason.encode(),
            },
        )

    async def send(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]] | Mapping[str, str],
        body: bytes | None,
        *,
        pool: float | None,
        connect: float | None,
        read: float | None,
        total: float | None,
        request: httpx.Request | None = None,
    ) -> WireResponse:
        """One request, ``url`` already encoded, its answer read whole.

        What ``handle_async_request`` does without httpx's models: the
        gateway's proxied calls come here straight (services/chassis/http_client.py,
        ``Downstream.relay``). ``request`` only goes into the errors raised.
        """
        session = self._session or self._open()
        timeout = aiohttp.ClientTimeout(
            # An attempt never outlives its budget, however slowly bytes trickle
            # in. A hair later than the phase timeouts, so that running out while
            # waiting for a connection is reported as that (nothing was sent).
            total=total + _TOTAL_GRACE_SECONDS if total is not None else None,
            connect=pool,
            sock_connect=connect,
            sock_read=read,
        )
        with _mapped_errors(request):
            async with session.request(
                method,
                URL(url, encoded=True),  # encoded already (by httpx, or by the caller)
                headers=headers,
                data=body,
                allow_redirects=False,
                timeout=timeout,
            ) as response:
                content = await response.read()
                return WireResponse(
                    response.status,
                    response.headers,
                    response.raw_headers,
                    content,
                    response.reason or "",
                )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
