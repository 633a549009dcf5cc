"""The notifications API: what a signed-in user was told."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get

from services.chassis import Database
from services.chassis.auth import current_principal
from services.chassis.openapi import problems
from services.chassis.validation import PageLimit, PageOffset
from services.notifications import store
from services.notifications.models import Notification, NotificationPage


class NotificationsController(Controller):
    path = "/notifications"
    tags = ["notifications"]

    @get("/", responses=problems(401))
    async def list_notifications(
        self,
        request: Request[Any, Any, Any],
        db: Database,
        limit: PageLimit = 20,
        offset: PageOffset = 0,
    ) -> NotificationPage:
        """The signed-in user's notifications, newest first."""
        principal = current_principal(request)
        rows = await store.list_for_user(db, principal.user_id, limit=limit, offset=offset)
        return NotificationPage(items=[Notification(**r) for r in rows], limit=limit, offset=offset)
