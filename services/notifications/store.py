"""Recipients and notifications in the notifications database."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from services.chassis import Database


async def upsert_recipient(
    db: Database, user_id: UUID, email: str, name: str, registered_at: datetime
) -> None:
    await db.execute(
        "INSERT INTO recipients (user_id, email, name, registered_at) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (user_id) DO UPDATE SET email = EXCLUDED.email, name = EXCLUDED.name",
        user_id,
        email,
        name,
        registered_at,
    )


async def recipient(db: Database, user_id: UUID) -> tuple[str, str] | None:
    row = await db.fetchrow("SELECT email, name FROM recipients WHERE user_id = $1", user_id)
    return None if row is None else (row["email"], row["name"])


async def claim(
    db: Database,
    *,
    event_id: UUID,
    event_type: str,
    user_id: UUID,
    order_id: UUID | None,
    recipient: str,
    subject: str,
    occurred_at: datetime,
) -> str | None:
    """Record the notification as ``sending``; None if new, else the status it already has."""
    async with db.transaction() as conn:
        inserted = await conn.fetchval(
            "INSERT INTO notifications (event_id, event_type, user_id, order_id, recipient, "
            "subject, status, occurred_at) VALUES ($1, $2, $3, $4, $5, $6, 'sending', $7) "
            "ON CONFLICT (event_id) DO NOTHING RETURNING true",
            event_id,
            event_type,
            user_id,
            order_id,
            recipient,
            subject,
            occurred_at,
        )
        if inserted:
            return None
        status: str = await conn.fetchval(
            "SELECT status FROM notifications WHERE event_id = $1", event_id
        )
        return status


async def mark_sent(db: Database, event_id: UUID) -> None:
    await db.execute(
        "UPDATE notifications SET status = 'sent', sent_at = now() WHERE event_id = $1", event_id
    )


async def list_for_user(
    db: Database, user_id: UUID, *, limit: int, offset: int
) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT event_id, event_type, order_id, recipient, subject, status, occurred_at, "
        "created_at, sent_at FROM notifications WHERE user_id = $1 "
        "ORDER BY created_at DESC, event_id LIMIT $2 OFFSET $3",
        user_id,
        limit,
        offset,
    )
    return [dict(r) for r in rows]
