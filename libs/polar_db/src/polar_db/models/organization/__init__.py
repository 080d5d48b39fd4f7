"""The tables the organization service owns, in schema `organization` (decision 0021)."""

from polar_db.models.base import ORGANIZATION as SCHEMA
from polar_db.models.organization.organizations import Organization
from polar_db.models.organization.users import OAuthAccount, User, UserOrganization

__all__ = ["SCHEMA", "OAuthAccount", "Organization", "User", "UserOrganization"]
