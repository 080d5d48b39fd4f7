"""Identifiers every service derives alike from GitHub's, so none has to ask another.

An organization's id is a UUIDv5 of its platform and GitHub account id: the organization
service creates it with this id and the repository service files a new installation's
repositories under the same id in the same instant (decision 0021). Organizations created
before ids were derived keep their random ids; the repository service's read model holds
them and is consulted first.
"""

from __future__ import annotations

import uuid

# Fixed forever: changing it would give every organization a second id.
NAMESPACE = uuid.UUID("5f0c3a56-6b7e-4a36-9a51-8d3c2f0e7b11")


def organization_id(platform: str, external_id: int) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"{platform}:organization:{external_id}")
