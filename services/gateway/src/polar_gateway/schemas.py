"""The API's JSON shapes (request bodies and responses); they make the OpenAPI document.

Responses are built from our own services' protobuf messages by `mappers` (trusted data, so
they are constructed without re-validation); request bodies are validated strictly (unknown
fields are refused, so a typo is a 422 rather than silently ignored).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")

Platform = Literal["github"]
MAX_INT64 = 2**63 - 1


class Schema(BaseModel):
    # The gateway never parses its own answers; tests validate them against these models,
    # strictly: a field the mappers add without declaring it here is an error.
    model_config = ConfigDict(extra="forbid")


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- errors ----------------------------------------------------------------------------------


class ErrorDetail(Schema):
    """One invalid field: found by the gateway (a pydantic error type) or by the service
    behind it (`type` field_violation, `field` the request field's dotted path)."""

    location: list[str] = Field(description='Where the value was, e.g. ["body", "amount"].')
    message: str
    type: str = Field(description="missing, string_too_long, ... or field_violation.")
    field: str | None = Field(
        default=None, description="The service's field path, e.g. amount.minor_units."
    )


class ErrorResource(Schema):
    type: str = Field(description="What was not found, e.g. polar.repository.v1.Issue.")
    name: str = Field(description="Its id or name as given.")


class Error(Schema):
    code: str = Field(description="Stable snake_case error code, e.g. not_found.")
    message: str
    request_id: str | None = None
    details: list[ErrorDetail] | None = Field(
        default=None, description="The invalid fields, one entry each (422)."
    )
    reason: str | None = Field(
        default=None,
        description="Stable UPPER_SNAKE_CASE reason given by the service (google.rpc.ErrorInfo), "
        "finer than `code`: e.g. ISSUE_NOT_FOUND, ORGANIZATION_SUSPENDED, INVALID_ARGUMENT.",
    )
    domain: str | None = Field(
        default=None, description="Who gave the reason, e.g. polar.repository.v1."
    )
    resource: ErrorResource | None = Field(
        default=None, description="What was not found (404 from a service)."
    )
    retry_after_seconds: float | None = Field(
        default=None, description="When to try again (503; also the Retry-After header)."
    )


class ErrorResponse(Schema):
    error: Error


# --- pages -----------------------------------------------------------------------------------


class Page(Schema, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` to get the next page; null on the last page."
    )


# --- users and organizations ------------------------------------------------------------------


class UserRead(Schema):
    id: str
    username: str
    email: str | None
    email_verified: bool
    avatar_url: str | None
    created_at: datetime | None
    modified_at: datetime | None


class UserUpdate(Input):
    """Nothing about a user can be changed through the API yet: username, email and avatar
    come from GitHub at sign-in, and the organization service has no UpdateUser RPC. An
    empty body is accepted (returns the user); any field is refused with 422."""


OrganizationStatus = Literal["inactive", "active", "suspended", "unspecified"]


class OrganizationRead(Schema):
    id: str
    platform: Platform
    name: str
    external_id: int
    avatar_url: str | None
    is_personal: bool
    installation_id: int | None
    status: OrganizationStatus
    installation_created_at: datetime | None
    installation_updated_at: datetime | None
    installation_suspended_at: datetime | None
    installation_suspended_by: str | None
    installation_permissions: dict[str, Any] | None
    created_at: datetime | None
    modified_at: datetime | None


class RepositoryRead(Schema):
    id: str
    platform: Platform
    organization_id: str
    external_id: int
    name: str
    description: str | None
    is_private: bool
    is_fork: bool
    is_archived: bool
    stars: int
    forks: int
    watchers: int
    open_issues: int
    main_branch: str | None
    topics: list[str]
    license: str | None
    homepage: str | None
    repository_created_at: datetime | None
    repository_pushed_at: datetime | None
    repository_modified_at: datetime | None
    created_at: datetime | None
    modified_at: datetime | None


class OrganizationWithRepositories(OrganizationRead):
    repositories: list[RepositoryRead]


class InstallationCreate(Input):
    platform: Platform
    external_id: int = Field(gt=0, le=MAX_INT64, description="The GitHub App installation id.")


# --- issues, pull requests, rewards ------------------------------------------------------------


class GitHubAccount(Schema):
    id: int
    login: str
    avatar_url: str | None


class Label(Schema):
    id: int
    name: str
    color: str


IssueState = Literal["open", "closed"]


class IssueRead(Schema):
    id: str
    platform: Platform
    organization_id: str
    repository_id: str
    external_id: int
    number: int
    title: str
    body: str | None
    state: IssueState | None
    state_reason: str | None
    comments: int
    author: GitHubAccount | None
    author_association: str | None
    labels: list[Label]
    assignees: list[GitHubAccount]
    milestone: str | None
    reactions_total: int
    issue_created_at: datetime | None
    issue_modified_at: datetime | None
    issue_closed_at: datetime | None
    created_at: datetime | None
    modified_at: datetime | None


class PullRequestRead(Schema):
    id: str
    platform: Platform
    organization_id: str
    repository_id: str
    external_id: int
    number: int
    title: str
    body: str | None
    state: IssueState | None
    author: GitHubAccount | None
    author_association: str | None
    labels: list[Label]
    assignees: list[GitHubAccount]
    requested_reviewers: list[GitHubAccount]
    is_draft: bool
    is_merged: bool
    merged_at: datetime | None
    merge_commit_sha: str | None
    head_ref: str | None
    base_ref: str | None
    commits: int
    additions: int
    deletions: int
    changed_files: int
    review_comments: int
    issue_created_at: datetime | None
    issue_modified_at: datetime | None
    issue_closed_at: datetime | None
    created_at: datetime | None
    modified_at: datetime | None


class Money(Schema):
    currency: str = Field(description="ISO 4217 code, upper case.")
    amount: int = Field(description="In the currency's minor units (cents for USD).")


class MoneyInput(Input):
    currency: str = Field(pattern=r"^[A-Za-z]{3}$", description="ISO 4217 code, e.g. USD.")
    amount: int = Field(gt=0, le=MAX_INT64, description="In minor units (cents for USD).")


class RewardCreate(Input):
    issue_id: uuid.UUID = Field(description="Id of the issue.")
    amount: MoneyInput


class RewardRead(Schema):
    id: str
    issue_id: str
    repository_id: str
    organization_id: str
    amount: Money
    state: str
    backer_user_id: str | None
    email: str | None
    created_at: datetime | None


# --- webhooks, health ------------------------------------------------------------------------


class WebhookAccepted(Schema):
    status: Literal["accepted", "pong"]
    delivery: str
    duplicate: bool = Field(False, description="JetStream already held this delivery.")


class Readiness(Schema):
    ready: bool
    checks: dict[str, bool]
