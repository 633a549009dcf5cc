"""``/api/v1/notifications``: what the signed-in user was told, from the notifications service."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response

from services.chassis.http_client import DependencyConfig
from services.chassis.openapi import problems, success
from services.chassis.validation import PageLimit, PageOffset
from services.gateway.routes import BEARER, EDGE, _forward, get, signed_in
from services.notifications.models import NotificationPage

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
    security = BEARER

    @get(
        "/",
        responses={
            200: success(NotificationPage, "The caller's notifications."),
            **problems(401),
            **EDGE,
        },
    )
    async def list_notifications(
        self, request: Request[Any, Any, Any], limit: PageLimit = 20, offset: PageOffset = 0
    ) -> Response[bytes]:
        """The signed-in user's notifications (mail sent for their orders and account)."""
        return await _forward(request, "/api/v1/notifications")
