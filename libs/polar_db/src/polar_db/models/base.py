"""Declarative base, shared column types, enums and mixins."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from sqlalchemy import BigInteger, MetaData, Text
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint names: autogenerate can then match, drop and rename
# constraints across revisions instead of seeing anonymous, server-named ones.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

bigint = Annotated[int, "bigint"]

# The services that own tables, each in the PostgreSQL schema of its name (decision 0021),
# in the order their migration histories run. A service's role is `polar_<schema>`.
ORGANIZATION = "organization"
REPOSITORY = "repository"
REWARD = "reward"
OWNERS = (ORGANIZATION, REPOSITORY, REWARD)


def role_of(owner: str) -> str:
    """The database role a service acts as: it may use its own schema and nothing else."""
    return f"polar_{owner}"


def in_schema(schema: str, *args: Any) -> tuple[Any, ...]:
    """`__table_args__` of a table owned by `schema`: its constraints and indexes, then the
    schema (SQLAlchemy takes keyword options as the tuple's last element)."""
    return (*args, {"schema": schema})


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - read by SQLAlchemy, never mutated
        uuid.UUID: UUID(as_uuid=True),
        datetime: TIMESTAMP(timezone=True),
        dict[str, Any]: JSONB,
        list[Any]: JSONB,
        str: Text,
        bigint: BigInteger,
    }
    # Fetch server-generated values (created_at, modified_at, seq) with RETURNING at flush
    # time: under asyncio, lazily refreshing an expired attribute would raise MissingGreenlet.
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012


class Platform(enum.StrEnum):
    github = "github"


class OrganizationStatus(enum.StrEnum):
    inactive = "inactive"
    active = "active"
    suspended = "suspended"


class IssueState(enum.StrEnum):
    open = "open"
    closed = "closed"


class RewardState(enum.StrEnum):
    created = "created"
    pending = "pending"
    paid = "paid"
    refunded = "refunded"
    cancelled = "cancelled"


def str_enum(enum_class: type[enum.Enum]) -> sa.Enum:
    """A Python enum stored as its value in a plain VARCHAR(32), without a CHECK constraint.

    Why not PostgreSQL ENUM types: adding a member would need a hand-written
    `ALTER TYPE ... ADD VALUE` (autogenerate does not compare enum members, so models and
    database would drift silently), and dropping one means recreating the type. With a
    fixed-length VARCHAR the column definition never changes when members change, so
    autogenerate stays quiet and a new member is a code-only change. SQLAlchemy still
    validates values on the Python side.
    """
    return sa.Enum(
        enum_class,
        native_enum=False,
        create_constraint=False,
        length=32,
        validate_strings=True,
        values_callable=lambda members: [m.value for m in members],
    )


class IdMixin:
    # sort_order: id first, bookkeeping timestamps last in CREATE TABLE.
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4, sort_order=-10)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(server_default=sa.func.now(), sort_order=100)
    # onupdate only fires for ORM/Core UPDATEs; polar_db.upsert sets it explicitly.
    modified_at: Mapped[datetime | None] = mapped_column(onupdate=sa.func.now(), sort_order=100)


class SoftDeleteMixin:
    deleted_at: Mapped[datetime | None] = mapped_column(sort_order=100)
