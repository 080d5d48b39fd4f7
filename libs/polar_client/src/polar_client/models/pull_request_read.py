from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from attrs import define as _attrs_define

from ..models.pull_request_read_state_type_0 import PullRequestReadStateType0

if TYPE_CHECKING:
    from ..models.git_hub_account import GitHubAccount
    from ..models.label import Label


T = TypeVar("T", bound="PullRequestRead")


@_attrs_define
class PullRequestRead:
    """
    Attributes:
        additions (int):
        assignees (list[GitHubAccount]):
        author (GitHubAccount | None):
        author_association (None | str):
        base_ref (None | str):
        body (None | str):
        changed_files (int):
        commits (int):
        created_at (datetime.datetime | None):
        deletions (int):
        external_id (int):
        head_ref (None | str):
        id (str):
        is_draft (bool):
        is_merged (bool):
        issue_closed_at (datetime.datetime | None):
        issue_created_at (datetime.datetime | None):
        issue_modified_at (datetime.datetime | None):
        labels (list[Label]):
        merge_commit_sha (None | str):
        merged_at (datetime.datetime | None):
        modified_at (datetime.datetime | None):
        number (int):
        organization_id (str):
        platform (Literal['github']):
        repository_id (str):
        requested_reviewers (list[GitHubAccount]):
        review_comments (int):
        state (None | PullRequestReadStateType0):
        title (str):
    """

    additions: int
    assignees: list[GitHubAccount]
    author: GitHubAccount | None
    author_association: str | None
    base_ref: str | None
    body: str | None
    changed_files: int
    commits: int
    created_at: datetime.datetime | None
    deletions: int
    external_id: int
    head_ref: str | None
    id: str
    is_draft: bool
    is_merged: bool
    issue_closed_at: datetime.datetime | None
    issue_created_at: datetime.datetime | None
    issue_modified_at: datetime.datetime | None
    labels: list[Label]
    merge_commit_sha: str | None
    merged_at: datetime.datetime | None
    modified_at: datetime.datetime | None
    number: int
    organization_id: str
    platform: Literal["github"]
    repository_id: str
    requested_reviewers: list[GitHubAccount]
    review_comments: int
    state: PullRequestReadStateType0 | None
    title: str

    def to_dict(self) -> dict[str, Any]:
        from ..models.git_hub_account import GitHubAccount

        additions = self.additions

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

        base_ref: str | None
        base_ref = self.base_ref

        body: str | None
        body = self.body

        changed_files = self.changed_files

        commits = self.commits

        created_at: str | None
        if isinstance(self.created_at, datetime.datetime):
            created_at = self.created_at.isoformat()
        else:
            created_at = self.created_at

        deletions = self.deletions

        external_id = self.external_id

        head_ref: str | None
        head_ref = self.head_ref

        id = self.id

        is_draft = self.is_draft

        is_merged = self.is_merged

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

        merge_commit_sha: str | None
        merge_commit_sha = self.merge_commit_sha

        merged_at: str | None
        if isinstance(self.merged_at, datetime.datetime):
            merged_at = self.merged_at.isoformat()
        else:
            merged_at = self.merged_at

        modified_at: str | None
        if isinstance(self.modified_at, datetime.datetime):
            modified_at = self.modified_at.isoformat()
        else:
            modified_at = self.modified_at

        number = self.number

        organization_id = self.organization_id

        platform = self.platform

        repository_id = self.repository_id

        requested_reviewers = []
        for requested_reviewers_item_data in self.requested_reviewers:
            requested_reviewers_item = requested_reviewers_item_data.to_dict()
            requested_reviewers.append(requested_reviewers_item)

        review_comments = self.review_comments

        state: str | None
        if isinstance(self.state, PullRequestReadStateType0):
            state = self.state.value
        else:
            state = self.state

        title = self.title

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "additions": additions,
                "assignees": assignees,
                "author": author,
                "author_association": author_association,
                "base_ref": base_ref,
                "body": body,
                "changed_files": changed_files,
                "commits": commits,
                "created_at": created_at,
                "deletions": deletions,
                "external_id": external_id,
                "head_ref": head_ref,
                "id": id,
                "is_draft": is_draft,
                "is_merged": is_merged,
                "issue_closed_at": issue_closed_at,
                "issue_created_at": issue_created_at,
                "issue_modified_at": issue_modified_at,
                "labels": labels,
                "merge_commit_sha": merge_commit_sha,
                "merged_at": merged_at,
                "modified_at": modified_at,
                "number": number,
                "organization_id": organization_id,
                "platform": platform,
                "repository_id": repository_id,
                "requested_reviewers": requested_reviewers,
                "review_comments": review_comments,
                "state": state,
                "title": title,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.git_hub_account import GitHubAccount
        from ..models.label import Label

        d = dict(src_dict)
        additions = d.pop("additions")

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

        def _parse_base_ref(data: object) -> str | None:
            if data is None:
                return data
            return cast(None | str, data)

        base_ref = _parse_base_ref(d.pop("base_ref"))

        def _parse_body(data: object) -> str | None:
            if data is None:
                return data
            return cast(None | str, data)

        body = _parse_body(d.pop("body"))

        changed_files = d.pop("changed_files")

        commits = d.pop("commits")

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

        deletions = d.pop("deletions")

        external_id = d.pop("external_id")

        def _parse_head_ref(data: object) -> str | None:
            if data is None:
                return data
            return cast(None | str, data)

        head_ref = _parse_head_ref(d.pop("head_ref"))

        id = d.pop("id")

        is_draft = d.pop("is_draft")

        is_merged = d.pop("is_merged")

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

        def _parse_merge_commit_sha(data: object) -> str | None:
            if data is None:
                return data
            return cast(None | str, data)

        merge_commit_sha = _parse_merge_commit_sha(d.pop("merge_commit_sha"))

        def _parse_merged_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                merged_at_type_0 = datetime.datetime.fromisoformat(data)

                return merged_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        merged_at = _parse_merged_at(d.pop("merged_at"))

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

        repository_id = d.pop("repository_id")

        requested_reviewers = []
        _requested_reviewers = d.pop("requested_reviewers")
        for requested_reviewers_item_data in _requested_reviewers:
            requested_reviewers_item = GitHubAccount.from_dict(requested_reviewers_item_data)

            requested_reviewers.append(requested_reviewers_item)

        review_comments = d.pop("review_comments")

        def _parse_state(data: object) -> PullRequestReadStateType0 | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                state_type_0 = PullRequestReadStateType0(data)

                return state_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | PullRequestReadStateType0, data)

        state = _parse_state(d.pop("state"))

        title = d.pop("title")

        pull_request_read = cls(
            additions=additions,
            assignees=assignees,
            author=author,
            author_association=author_association,
            base_ref=base_ref,
            body=body,
            changed_files=changed_files,
            commits=commits,
            created_at=created_at,
            deletions=deletions,
            external_id=external_id,
            head_ref=head_ref,
            id=id,
            is_draft=is_draft,
            is_merged=is_merged,
            issue_closed_at=issue_closed_at,
            issue_created_at=issue_created_at,
            issue_modified_at=issue_modified_at,
            labels=labels,
            merge_commit_sha=merge_commit_sha,
            merged_at=merged_at,
            modified_at=modified_at,
            number=number,
            organization_id=organization_id,
            platform=platform,
            repository_id=repository_id,
            requested_reviewers=requested_reviewers,
            review_comments=review_comments,
            state=state,
            title=title,
        )

        return pull_request_read
