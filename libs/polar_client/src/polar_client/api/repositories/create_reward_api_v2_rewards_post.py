from http import HTTPStatus
from typing import Any

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.error_response import ErrorResponse
from ...models.reward_create import RewardCreate
from ...models.reward_read import RewardRead
from ...types import UNSET, Response, Unset


def _get_kwargs(
    *,
    body: RewardCreate,
    idempotency_key: None | str | Unset = UNSET,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    if not isinstance(idempotency_key, Unset):
        headers["Idempotency-Key"] = idempotency_key

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/api/v2/rewards",
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> ErrorResponse | RewardRead | None:
    if response.status_code == 201:
        response_201 = RewardRead.from_dict(response.json())

        return response_201

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
) -> Response[ErrorResponse | RewardRead]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient,
    body: RewardCreate,
    idempotency_key: None | str | Unset = UNSET,
) -> Response[ErrorResponse | RewardRead]:
    """Create Reward

     Put a reward on an issue, backed by the signed-in user.

    Args:
        idempotency_key (None | str | Unset): Any string you pick once per reward: a retried
            request with the same key (from the same user) returns the reward the first one created.
        body (RewardCreate):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | RewardRead]
    """

    kwargs = _get_kwargs(
        body=body,
        idempotency_key=idempotency_key,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    *,
    client: AuthenticatedClient,
    body: RewardCreate,
    idempotency_key: None | str | Unset = UNSET,
) -> ErrorResponse | RewardRead | None:
    """Create Reward

     Put a reward on an issue, backed by the signed-in user.

    Args:
        idempotency_key (None | str | Unset): Any string you pick once per reward: a retried
            request with the same key (from the same user) returns the reward the first one created.
        body (RewardCreate):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | RewardRead
    """

    return sync_detailed(
        client=client,
        body=body,
        idempotency_key=idempotency_key,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient,
    body: RewardCreate,
    idempotency_key: None | str | Unset = UNSET,
) -> Response[ErrorResponse | RewardRead]:
    """Create Reward

     Put a reward on an issue, backed by the signed-in user.

    Args:
        idempotency_key (None | str | Unset): Any string you pick once per reward: a retried
            request with the same key (from the same user) returns the reward the first one created.
        body (RewardCreate):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | RewardRead]
    """

    kwargs = _get_kwargs(
        body=body,
        idempotency_key=idempotency_key,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient,
    body: RewardCreate,
    idempotency_key: None | str | Unset = UNSET,
) -> ErrorResponse | RewardRead | None:
    """Create Reward

     Put a reward on an issue, backed by the signed-in user.

    Args:
        idempotency_key (None | str | Unset): Any string you pick once per reward: a retried
            request with the same key (from the same user) returns the reward the first one created.
        body (RewardCreate):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | RewardRead
    """

    return (
        await asyncio_detailed(
            client=client,
            body=body,
            idempotency_key=idempotency_key,
        )
    ).parsed
