"""Transactional outbox and consumer idempotency records (see polar_kit.outbox/consumer).

No schema here: every service has its own copy of both tables in its own schema, found
through the connection's search_path (decision 0021), so a relay sees only its service's
events and a consumer only its own marks."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Identity, Index, LargeBinary
from sqlalchemy.orm import Mapped, mapped_column

from polar_db.models.base import Base, bigint


class OutboxEvent(Base):
    __tablename__ = "outbox_events"
    # The relay claims unpublished rows in seq order; the partial index stays small
    # because published rows drop out of it.
    __table_args__ = (
        Index(
            "ix_outbox_events_unpublished_seq",
            "seq",
            postgresql_where=sa.text("published_at IS NULL"),
        ),
        # Retention finds old published rows (polar_kit.retention). BRIN: a few pages for
        # a column that grows with insertion order, next to nothing to maintain per write.
        Index("ix_outbox_events_published_at", "published_at", postgresql_using="brin"),
    )

    # The event id: CloudEvents ce-id and the JetStream Nats-Msg-Id (dedupe key).
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    # Insertion order. Rows may commit out of seq order, so the relay tracks
    # published_at per row rather than a high-water mark.
    seq: Mapped[bigint] = mapped_column(Identity(always=False))
    subject: Mapped[str]
    type: Mapped[str]
    source: Mapped[str]
    payload: Mapped[bytes] = mapped_column(LargeBinary)  # serialized protobuf
    created_at: Mapped[datetime] = mapped_column(server_default=sa.func.now())
    published_at: Mapped[datetime | None]
    # Extra NATS headers for the message: the W3C traceparent of the span that wrote the row,
    # the request id and the GitHub delivery id it stems from (polar_kit.tracing).
    headers: Mapped[dict[str, Any] | None]


class ProcessedMessage(Base):
    """Marks a message as handled by a consumer; inserted in the handler's transaction."""

    __tablename__ = "processed_messages"
    # Retention finds old marks (polar_kit.retention); BRIN as above.
    __table_args__ = (
        Index("ix_processed_messages_processed_at", "processed_at", postgresql_using="brin"),
    )

    consumer: Mapped[str] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(server_default=sa.func.now())
