"""Contains all the data models used in inputs/outputs"""

from .error import Error
from .error_detail import ErrorDetail
from .error_resource import ErrorResource
from .error_response import ErrorResponse
from .git_hub_account import GitHubAccount
from .installation_create import InstallationCreate
from .issue_read import IssueRead
from .issue_read_state_type_0 import IssueReadStateType0
from .label import Label
from .list_issues_api_v2_issues_platform_org_repo_get_state_type_0 import (
    ListIssuesApiV2IssuesPlatformOrgRepoGetStateType0,
)
from .list_pull_requests_api_v2_pull_requests_platform_org_repo_get_state_type_0 import (
    ListPullRequestsApiV2PullRequestsPlatformOrgRepoGetStateType0,
)
from .money import Money
from .money_input import MoneyInput
from .organization_read import OrganizationRead
from .organization_read_installation_permissions_type_0 import (
    OrganizationReadInstallationPermissionsType0,
)
from .organization_read_status import OrganizationReadStatus
from .organization_with_repositories import OrganizationWithRepositories
from .organization_with_repositories_installation_permissions_type_0 import (
    OrganizationWithRepositoriesInstallationPermissionsType0,
)
from .organization_with_repositories_status import OrganizationWithRepositoriesStatus
from .page_issue_read import PageIssueRead
from .page_organization_with_repositories import PageOrganizationWithRepositories
from .page_pull_request_read import PagePullRequestRead
from .page_reward_read import PageRewardRead
from .pull_request_read import PullRequestRead
from .pull_request_read_state_type_0 import PullRequestReadStateType0
from .repository_read import RepositoryRead
from .repository_sync_read import RepositorySyncRead
from .repository_sync_read_failure_reason_type_0 import RepositorySyncReadFailureReasonType0
from .repository_sync_read_status import RepositorySyncReadStatus
from .reward_create import RewardCreate
from .reward_read import RewardRead
from .session_list import SessionList
from .session_read import SessionRead
from .skipped_item import SkippedItem
from .skipped_item_kind import SkippedItemKind
from .user_read import UserRead
from .user_update import UserUpdate
from .webhook_accepted import WebhookAccepted
from .webhook_accepted_status import WebhookAcceptedStatus

__all__ = (
    "Error",
    "ErrorDetail",
    "ErrorResource",
    "ErrorResponse",
    "GitHubAccount",
    "InstallationCreate",
    "IssueRead",
    "IssueReadStateType0",
    "Label",
    "ListIssuesApiV2IssuesPlatformOrgRepoGetStateType0",
    "ListPullRequestsApiV2PullRequestsPlatformOrgRepoGetStateType0",
    "Money",
    "MoneyInput",
    "OrganizationRead",
    "OrganizationReadInstallationPermissionsType0",
    "OrganizationReadStatus",
    "OrganizationWithRepositories",
    "OrganizationWithRepositoriesInstallationPermissionsType0",
    "OrganizationWithRepositoriesStatus",
    "PageIssueRead",
    "PageOrganizationWithRepositories",
    "PagePullRequestRead",
    "PageRewardRead",
    "PullRequestRead",
    "PullRequestReadStateType0",
    "RepositoryRead",
    "RepositorySyncRead",
    "RepositorySyncReadFailureReasonType0",
    "RepositorySyncReadStatus",
    "RewardCreate",
    "RewardRead",
    "SessionList",
    "SessionRead",
    "SkippedItem",
    "SkippedItemKind",
    "UserRead",
    "UserUpdate",
    "WebhookAccepted",
    "WebhookAcceptedStatus",
)
