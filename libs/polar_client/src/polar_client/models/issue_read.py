from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from attrs import define as _attrs_define

from ..models.issue_read_state_type_0 import IssueReadStateType0

if TYPE_CHECKING:
    from ..models.git_hub_account import GitHubAccount
    from ..models.label import Label


T = TypeVar("T", bound="IssueRead")


@_attrs_define
class IssueRead:
    """
    Attributes:
        assignees (list[GitHubAccount]):
        author (GitHubAccount | None):
        author_association (None | str):
        body (None | str):
        comments (int):
        created_at (datetime.datetime | None):
        external_id (int):
        id (str):
        issue_closed_at (datetime.datetime | None):
        issue_created_at (datetime.datetime | None):
        issue_modified_at (datetime.datetime | None):
        labels (list[Label]):
        milestone (None | str):
        modified_at (datetime.datetime | None):
        number (int):
        organization_id (str):
        platform (Literal['github']):
        reactions_total (int):
        repository_id (str):
        state (IssueReadStateType0 | None):
        state_reason (None | str):
        title (str):
    """

    assignees: list[GitHubAccount]
    author: GitHubAccount | None
    author_association: str | None
    body: str | None
    comments: int
    created_at: datetime.datetime | None
    external_id: int
    id: str
    issue_closed_at: datetime.datetime | None
    issue_created_at: datetime.datetime | None
    issue_modified_at: datetime.datetime | None
    labels: list[Label]
    milestone: str | None
    modified_at: datetime.datetime | None
    number: int
    organization_id: str
    platform: Literal["github"]
    reactions_total: int
    repository_id: str
    state: IssueReadStateType0 | None
    state_reason: str | None
    title: str

    def to_dict(self) -> dict[str, Any]:
        from ..models.git_hub_account import GitHubAccount

        assignees = []
        for assignees_item_data in self.assignees:
            assignees_item = assignees_item_data.to_dict()
            assignees.append(assignees_item)

        author: dict[str, Any] | None
        if isinstance(self.author, GitHubAccount):
            author = self.author.to_dict()
        else:
            author = self.author

        author_association: str | None
        author_association = self.author_association

        body: str | None
        body = self.body

        comments = self.comments

        created_at: str | None
        if isinstance(self.created_at, datetime.datetime):
            created_at = self.created_at.isoformat()
        else:
            created_at = self.created_at

        external_id = self.external_id

        id = self.id

        issue_closed_at: str | None
        if isinstance(self.issue_closed_at, datetime.datetime):
            issue_closed_at = self.issue_closed_at.isoformat()
        else:
            issue_closed_at = self.issue_closed_at

        issue_created_at: str | None
        if isinstance(self.issue_created_at, datetime.datetime):
            issue_created_at = self.issue_created_at.isoformat()
        else:
            issue_created_at = self.issue_created_at

        issue_modified_at: str | None
        if isinstance(self.issue_modified_at, datetime.datetime):
            issue_modified_at = self.issue_modified_at.isoformat()
        else:
            issue_modified_at = self.issue_modified_at

        labels = []
        for labels_item_data in self.labels:
            labels_item = labels_item_data.to_dict()
            labels.append(labels_item)

        milestone: str | None
        milestone = self.milestone

        modified_at: str | None
        if isinstance(self.modified_at, datetime.datetime):
            modified_at = self.modified_at.isoformat()
        else:
            modified_at = self.modified_at

        number = self.number

        organization_id = self.organization_id

        platform = self.platform

        reactions_total = self.reactions_total

        repository_id = self.repository_id

        state: str | None
        if isinstance(self.state, IssueReadStateType0):
            state = self.state.value
        else:
            state = self.state

        state_reason: str | None
        state_reason = self.state_reason

        title = self.title

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "assignees": assignees,
                "author": author,
                "author_association": author_association,
                "body": body,
                "comments": comments,
                "created_at": created_at,
                "external_id": external_id,
                "id": id,
                "issue_closed_at": issue_closed_at,
                "issue_created_at": issue_created_at,
                "issue_modified_at": issue_modified_at,
                "labels": labels,
                "milestone": milestone,
                "modified_at": modified_at,
                "number": number,
                "organization_id": organization_id,
                "platform": platform,
                "reactions_total": reactions_total,
                "repository_id": repository_id,
                "state": state,
                "state_reason": state_reason,
                "title": title,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.git_hub_account import GitHubAccount
        from ..models.label import Label

        d = dict(src_dict)
        assignees = []
        _assignees = d.pop("assignees")
        for assignees_item_data in _assignees:
            assignees_item = GitHubAccount.from_dict(assignees_item_data)

            assignees.append(assignees_item)

        def _parse_author(data: object) -> GitHubAccount | None:
            if data is None:
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                author_type_0 = GitHubAccount.from_dict(data)

                return author_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(GitHubAccount | None, data)

        author = _parse_author(d.pop("author"))

        def _parse_author_association(data: object) -> str | None:
            if data is None:
                return data
            return cast(None | str, data)

        author_association = _parse_author_association(d.pop("author_association"))

        def _parse_body(data: object) -> str | None:
            if data is None:
                return data
            return cast(None | str, data)

        body = _parse_body(d.pop("body"))

        comments = d.pop("comments")

        def _parse_created_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                created_at_type_0 = datetime.datetime.fromisoformat(data)

                return created_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        created_at = _parse_created_at(d.pop("created_at"))

        external_id = d.pop("external_id")

        id = d.pop("id")

        def _parse_issue_closed_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                issue_closed_at_type_0 = datetime.datetime.fromisoformat(data)

                return issue_closed_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        issue_closed_at = _parse_issue_closed_at(d.pop("issue_closed_at"))

        def _parse_issue_created_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                issue_created_at_type_0 = datetime.datetime.fromisoformat(data)

                return issue_created_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        issue_created_at = _parse_issue_created_at(d.pop("issue_created_at"))

        def _parse_issue_modified_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                issue_modified_at_type_0 = datetime.datetime.fromisoformat(data)

                return issue_modified_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        issue_modified_at = _parse_issue_modified_at(d.pop("issue_modified_at"))

        labels = []
        _labels = d.pop("labels")
        for labels_item_data in _labels:
            labels_item = Label.from_dict(labels_item_data)

            labels.append(labels_item)

        def _parse_milestone(data: object) -> str | None:
            if data is None:
                return data
            return cast(None | str, data)

        milestone = _parse_milestone(d.pop("milestone"))

        def _parse_modified_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                modified_at_type_0 = datetime.datetime.fromisoformat(data)

                return modified_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        modified_at = _parse_modified_at(d.pop("modified_at"))

        number = d.pop("number")

        organization_id = d.pop("organization_id")

        platform = cast(Literal["github"], d.pop("platform"))
        if platform != "github":
            raise ValueError(f"platform must match const 'github', got '{platform}'")

        reactions_total = d.pop("reactions_total")

        repository_id = d.pop("repository_id")

        def _parse_state(data: object) -> IssueReadStateType0 | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                state_type_0 = IssueReadStateType0(data)

                return state_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(IssueReadStateType0 | None, data)

        state = _parse_state(d.pop("state"))

        def _parse_state_reason(data: object) -> str | None:
            if data is None:
                return data
            return cast(None | str, data)

        state_reason = _parse_state_reason(d.pop("state_reason"))

        title = d.pop("title")

        issue_read = cls(
            assignees=assignees,
            author=author,
            author_association=author_association,
            body=body,
            comments=comments,
            created_at=created_at,
            external_id=external_id,
            id=id,
            issue_closed_at=issue_closed_at,
            issue_created_at=issue_created_at,
            issue_modified_at=issue_modified_at,
            labels=labels,
            milestone=milestone,
            modified_at=modified_at,
            number=number,
            organization_id=organization_id,
            platform=platform,
            reactions_total=reactions_total,
            repository_id=repository_id,
            state=state,
            state_reason=state_reason,
            title=title,
        )

        return issue_read
