"""``/api/v1/notifications``: what the signed-in user was told, from the notifications service."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get

from services.chassis.http_client import DependencyConfig
from services.gateway.proxy import forward
from services.gateway.routes import _service, signed_in

# One indexed query, like a catalog read.
NOTIFICATIONS_TIMEOUT = 1.0
NOTIFICATIONS_DOWNSTREAM = DependencyConfig(
    name="notifications", base_url="", timeout=NOTIFICATIONS_TIMEOUT
)


class NotificationRoutes(Controller):
    path = "/api/v1/notifications"
    tags = ["notifications"]
    guards = [signed_in]
    opt = {"timeout": NOTIFICATIONS_TIMEOUT}

    @get("/")
    async def list_notifications(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        """The signed-in user's notifications (mail sent for their orders and account)."""
        return await forward(
            request, _service(request, "notifications"), "GET", "/notifications", "/notifications"
        )
