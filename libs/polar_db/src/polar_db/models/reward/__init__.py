"""The tables the reward service owns, in schema `reward` (decisions 0021, 0027)."""

from polar_db.models.base import REWARD as SCHEMA
from polar_db.models.reward.rewards import Reward

__all__ = ["SCHEMA", "Reward"]
