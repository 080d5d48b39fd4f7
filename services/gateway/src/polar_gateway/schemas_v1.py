"""The JSON shapes of /api/v1: the monolith's contract, field for field (issue 18).

Names, required fields and enums are the monolith's OpenAPI document's; its web app's
generated client reads them. Required fields are never null. Responses are built as plain
dicts by `mappers_v1`; the tests validate them against these models and against the
repository's v1 OpenAPI document (services/gateway/openapi/v1.yaml).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .schemas import MAX_INT64

Platform = Literal["github"]


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Input(BaseModel):
    # The monolith's models (pydantic v1 defaults) ignored unknown fields: so does v1.
    model_config = ConfigDict(extra="ignore")


# --- errors (FastAPI's own shapes, as the monolith answered them) ---------------------------


class ValidationError(Schema):
    loc: list[str | int]
    msg: str
    type: str


class HTTPValidationError(Schema):
    detail: list[ValidationError]


class ErrorDetail(Schema):
    detail: str


# --- users ---------------------------------------------------------------------------------


class UserRead(Schema):
    profile: dict[str, Any] = Field(description="The GitHub profile: login, avatar_url, name.")
    id: uuid.UUID | None = None
    email: str = Field(json_schema_extra={"format": "email"})
    is_active: bool | None = True
    is_superuser: bool | None = False
    is_verified: bool | None = False


class UserUpdate(Input):
    profile: dict[str, Any]
    password: str | None = None
    email: Annotated[str, Field(json_schema_extra={"format": "email"})] | None = None
    is_active: bool | None = None
    is_superuser: bool | None = None
    is_verified: bool | None = None


class ActionResponse(Schema):
    action: Literal["login", "logout"]
    success: bool


# --- organizations and repositories --------------------------------------------------------

Status = Literal["inactive", "active", "suspended"]
Visibility = Literal["public", "private"]


class RepositoryRead(Schema):
    platform: Platform
    external_id: int
    organization_id: uuid.UUID | None = None
    name: str
    description: str | None = None
    open_issues: int | None = None
    forks: int | None = None
    stars: int | None = None
    watchers: int | None = None
    main_branch: str | None = None
    topics: list[str] | None = None
    license: str | None = None
    repository_pushed_at: datetime | None = None
    repository_created_at: datetime | None = None
    repository_modified_at: datetime | None = None
    is_private: bool
    is_fork: bool | None = None
    is_issues_enabled: bool | None = None
    is_projects_enabled: bool | None = None
    is_wiki_enabled: bool | None = None
    is_pages_enabled: bool | None = None
    is_downloads_enabled: bool | None = None
    is_archived: bool | None = None
    is_disabled: bool | None = None
    id: uuid.UUID
    visibility: Visibility


class OrganizationRead(Schema):
    platform: Platform
    name: str
    external_id: int
    avatar_url: str
    is_personal: bool
    is_site_admin: bool
    installation_id: int
    installation_created_at: datetime
    installation_updated_at: datetime | None = None
    installation_suspended_at: datetime | None = None
    id: uuid.UUID
    status: Status
    created_at: datetime
    modified_at: datetime | None = None
    repositories: list[RepositoryRead] | None = None


class InstallationCreate(Input):
    platform: Platform
    external_id: int = Field(gt=0, le=MAX_INT64, description="The GitHub App installation id.")


class OAuth2AuthorizeResponse(Schema):
    authorization_url: str


# --- issues, pull requests, rewards --------------------------------------------------------

State = Literal["open", "closed"]
RewardState = Literal["created", "pending", "paid"]


class IssueRead(Schema):
    platform: Platform
    external_id: int
    organization_id: uuid.UUID
    repository_id: uuid.UUID
    number: int
    title: str
    body: str | None = None
    comments: int | None = None
    author: dict[str, Any] | None = None
    author_association: str | None = None
    labels: list[dict[str, Any]] | None = None
    assignee: dict[str, Any] | None = None
    assignees: list[dict[str, Any]] | None = None
    milestone: dict[str, Any] | None = None
    closed_by: dict[str, Any] | None = None
    reactions: dict[str, Any] | None = None
    state: State
    state_reason: str | None = None
    issue_closed_at: datetime | None = None
    issue_modified_at: datetime | None = None
    issue_created_at: datetime
    id: uuid.UUID
    created_at: datetime
    modified_at: datetime | None = None


class PullRequestRead(IssueRead):
    requested_reviewers: list[dict[str, Any]] | None = None
    requested_teams: list[dict[str, Any]] | None = None
    is_merged: bool | None = None
    merged_at: datetime | None = None
    merge_commit_sha: str | None = None
    head: dict[str, Any] | None = None
    base: dict[str, Any] | None = None
    commits: int | None = None
    additions: int | None = None
    deletions: int | None = None
    changed_files: int | None = None
    review_comments: int | None = None
    maintainer_can_modify: bool | None = None
    is_mergeable: bool | None = None
    mergeable_state: str | None = None
    merged_by: dict[str, Any] | None = None


class RewardCreate(Input):
    issue_id: uuid.UUID
    # Whole cents: 12.5 is refused (422), never rounded.
    amount: float = Field(
        gt=0,
        le=MAX_INT64,
        multiple_of=1,
        description="US cents, a whole number (the monolith stored integer cents in USD).",
    )


class RewardRead(Schema):
    issue_id: uuid.UUID
    amount: float = Field(description="US cents.")
    id: uuid.UUID
    created_at: datetime
    repository_id: uuid.UUID
    organization_id: uuid.UUID
    state: RewardState


# --- webhooks ------------------------------------------------------------------------------


class WebhookResponse(Schema):
    success: bool
    message: str | None = None
    task_id: str | None = None
