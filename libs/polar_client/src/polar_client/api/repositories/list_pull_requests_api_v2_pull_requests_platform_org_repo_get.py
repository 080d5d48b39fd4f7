from http import HTTPStatus
from typing import Any, Literal
from urllib.parse import quote

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.error_response import ErrorResponse
from ...models.list_pull_requests_api_v2_pull_requests_platform_org_repo_get_state_type_0 import (
    ListPullRequestsApiV2PullRequestsPlatformOrgRepoGetStateType0,
)
from ...models.page_pull_request_read import PagePullRequestRead
from ...types import UNSET, Response, Unset


def _get_kwargs(
    platform: Literal["github"],
    org: str,
    repo: str,
    *,
    state: ListPullRequestsApiV2PullRequestsPlatformOrgRepoGetStateType0 | None | Unset = UNSET,
    limit: int | Unset = 50,
    cursor: None | str | Unset = UNSET,
) -> dict[str, Any]:

    params: dict[str, Any] = {}

    json_state: str | Unset | None
    if isinstance(state, Unset):
        json_state = UNSET
    elif isinstance(state, ListPullRequestsApiV2PullRequestsPlatformOrgRepoGetStateType0):
        json_state = state.value
    else:
        json_state = state
    params["state"] = json_state

    params["limit"] = limit

    json_cursor: str | Unset | None
    if isinstance(cursor, Unset):
        json_cursor = UNSET
    else:
        json_cursor = cursor
    params["cursor"] = json_cursor

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/api/v2/pull_requests/{platform}/{org}/{repo}".format(
            platform=quote(str(platform), safe=""),
            org=quote(str(org), safe=""),
            repo=quote(str(repo), safe=""),
        ),
        "params": params,
    }

    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> ErrorResponse | PagePullRequestRead | None:
    if response.status_code == 200:
        response_200 = PagePullRequestRead.from_dict(response.json())

        return response_200

    if response.status_code == 401:
        response_401 = ErrorResponse.from_dict(response.json())

        return response_401

    if response.status_code == 403:
        response_403 = ErrorResponse.from_dict(response.json())

        return response_403

    if response.status_code == 404:
        response_404 = ErrorResponse.from_dict(response.json())

        return response_404

    if response.status_code == 422:
        response_422 = ErrorResponse.from_dict(response.json())

        return response_422

    if response.status_code == 503:
        response_503 = ErrorResponse.from_dict(response.json())

        return response_503

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Response[ErrorResponse | PagePullRequestRead]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    platform: Literal["github"],
    org: str,
    repo: str,
    *,
    client: AuthenticatedClient,
    state: ListPullRequestsApiV2PullRequestsPlatformOrgRepoGetStateType0 | None | Unset = UNSET,
    limit: int | Unset = 50,
    cursor: None | str | Unset = UNSET,
) -> Response[ErrorResponse | PagePullRequestRead]:
    """List Pull Requests

    Args:
        platform (Literal['github']):
        org (str): GitHub account login.
        repo (str): GitHub repository name.
        state (ListPullRequestsApiV2PullRequestsPlatformOrgRepoGetStateType0 | None | Unset): Only
            open or only closed.
        limit (int | Unset): Items per page (1 to 100). Default: 50.
        cursor (None | str | Unset): `next_cursor` of the previous page; omit for the first.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | PagePullRequestRead]
    """

    kwargs = _get_kwargs(
        platform=platform,
        org=org,
        repo=repo,
        state=state,
        limit=limit,
        cursor=cursor,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    platform: Literal["github"],
    org: str,
    repo: str,
    *,
    client: AuthenticatedClient,
    state: ListPullRequestsApiV2PullRequestsPlatformOrgRepoGetStateType0 | None | Unset = UNSET,
    limit: int | Unset = 50,
    cursor: None | str | Unset = UNSET,
) -> ErrorResponse | PagePullRequestRead | None:
    """List Pull Requests

    Args:
        platform (Literal['github']):
        org (str): GitHub account login.
        repo (str): GitHub repository name.
        state (ListPullRequestsApiV2PullRequestsPlatformOrgRepoGetStateType0 | None | Unset): Only
            open or only closed.
        limit (int | Unset): Items per page (1 to 100). Default: 50.
        cursor (None | str | Unset): `next_cursor` of the previous page; omit for the first.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | PagePullRequestRead
    """

    return sync_detailed(
        platform=platform,
        org=org,
        repo=repo,
        client=client,
        state=state,
        limit=limit,
        cursor=cursor,
    ).parsed


async def asyncio_detailed(
    platform: Literal["github"],
    org: str,
    repo: str,
    *,
    client: AuthenticatedClient,
    state: ListPullRequestsApiV2PullRequestsPlatformOrgRepoGetStateType0 | None | Unset = UNSET,
    limit: int | Unset = 50,
    cursor: None | str | Unset = UNSET,
) -> Response[ErrorResponse | PagePullRequestRead]:
    """List Pull Requests

    Args:
        platform (Literal['github']):
        org (str): GitHub account login.
        repo (str): GitHub repository name.
        state (ListPullRequestsApiV2PullRequestsPlatformOrgRepoGetStateType0 | None | Unset): Only
            open or only closed.
        limit (int | Unset): Items per page (1 to 100). Default: 50.
        cursor (None | str | Unset): `next_cursor` of the previous page; omit for the first.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | PagePullRequestRead]
    """

    kwargs = _get_kwargs(
        platform=platform,
        org=org,
        repo=repo,
        state=state,
        limit=limit,
        cursor=cursor,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    platform: Literal["github"],
    org: str,
    repo: str,
    *,
    client: AuthenticatedClient,
    state: ListPullRequestsApiV2PullRequestsPlatformOrgRepoGetStateType0 | None | Unset = UNSET,
    limit: int | Unset = 50,
    cursor: None | str | Unset = UNSET,
) -> ErrorResponse | PagePullRequestRead | None:
    """List Pull Requests

    Args:
        platform (Literal['github']):
        org (str): GitHub account login.
        repo (str): GitHub repository name.
        state (ListPullRequestsApiV2PullRequestsPlatformOrgRepoGetStateType0 | None | Unset): Only
            open or only closed.
        limit (int | Unset): Items per page (1 to 100). Default: 50.
        cursor (None | str | Unset): `next_cursor` of the previous page; omit for the first.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | PagePullRequestRead
    """

    return (
        await asyncio_detailed(
            platform=platform,
            org=org,
            repo=repo,
            client=client,
            state=state,
            limit=limit,
            cursor=cursor,
        )
    ).parsed
