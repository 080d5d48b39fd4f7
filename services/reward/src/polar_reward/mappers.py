"""Pure conversions between ORM rows and protobuf messages."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp
from polar.common.v1.common_pb2 import Money
from polar.reward.v1 import reward_pb2
from polar_db.models.reward import Reward


def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def reward(r: Reward) -> reward_pb2.Reward:
    return reward_pb2.Reward(
        id=str(r.id),
        issue_id=str(r.issue_id),
        repository_id=str(r.repository_id),
        organization_id=str(r.organization_id),
        amount=Money(currency=r.currency, minor_units=r.amount),
        state=r.state.value,
        backer_user_id=str(r.backer_user_id) if r.backer_user_id else "",
        email=r.email or "",
        created_at=timestamp(r.created_at),
    )
