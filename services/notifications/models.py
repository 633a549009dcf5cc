"""The notifications API's response bodies."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec


class Notification(msgspec.Struct, kw_only=True):
    event_id: UUID
    event_type: str
    order_id: UUID | None
    recipient: str
    subject: str
    status: str  # sending | sent
    occurred_at: datetime
    created_at: datetime
    sent_at: datetime | None


class NotificationPage(msgspec.Struct, kw_only=True):
    items: list[Notification]
    limit: int
    offset: int
