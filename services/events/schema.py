"""The event envelope in code: what ``events.schema.json`` describes, as pydantic models.

Producers build payloads with these models and consumers parse with them, so
neither side hand-writes a dict; ``tests/events/test_event_schema.py`` holds
the models and the JSON Schema file to each other.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

SCHEMA_PATH = Path(__file__).with_name("events.schema.json")
VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OrderData(_Strict):
    order_id: UUID
    user_id: UUID
    status: Literal["confirmed", "cancelled"]
    reason: str | None
    total_cents: int = Field(ge=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")


class UserData(_Strict):
    user_id: UUID
    email: str
    name: str


class _Envelope(_Strict):
    id: UUID
    version: Literal[1]
    occurred_at: datetime
    source: Literal["orders", "accounts"]


class OrderEvent(_Envelope):
    type: Literal["order.confirmed", "order.cancelled"]
    data: OrderData


class UserRegistered(_Envelope):
    type: Literal["user.registered"]
    data: UserData


Event = Annotated[OrderEvent | UserRegistered, Field(discriminator="type")]
_ADAPTER: TypeAdapter[OrderEvent | UserRegistered] = TypeAdapter(Event)


def validate_event(raw: bytes | str | dict[str, Any]) -> OrderEvent | UserRegistered:
    """Parse a message body; raises ``pydantic.ValidationError`` for anything else."""
    if isinstance(raw, dict):
        return _ADAPTER.validate_python(raw)
    return _ADAPTER.validate_json(raw)
