"""Schemathesis against /api/v1, from the repository's v1 document: generated requests
(valid and not) for every route, as a signed-in member of an organization with a
repository and issues. No answer may be a 5xx, and every answer must be one the document
lists, in its content type and schema.

The member is a superuser, so the user-admin routes are reached too. Left out: the live
stream (it never ends) and logout (it would end the run's session).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import v1_contract
from gateway_support import Install, MakeRepos, Seed, SignIn
from polar_gateway.settings import GatewaySettings
from polar_gateway.testing import RunningGateway
from polar_organization import superuser
from polar_organization.settings import OrganizationSettings

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)


async def test_schemathesis_finds_no_5xx_and_no_mismatch(
    gateway: RunningGateway,
    gateway_settings: GatewaySettings,
    sign_in: SignIn,
    install: Install,
    make_repos: MakeRepos,
    seed: Seed,
    tmp_path: Path,
) -> None:
    member = await sign_in()
    settings = OrganizationSettings.model_validate({"database_url": gateway_settings.database_url})
    assert await superuser.run(member.user_id, True, settings) == 0
    org = await install(member)
    [repo] = await make_repos(org)
    await seed.issues(repo, 2)
    await seed.pull_requests(repo, 1)
    document = tmp_path / "v1.json"
    document.write_text(json.dumps(v1_contract.load()))

    # A subprocess: the gateway serves on this test's event loop, which must keep running.
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        str(document),
        "--url",
        gateway.url,
        "--header",
        f"Authorization: Bearer {member.token}",
        "--checks",
        ",".join(CHECKS),
        "--exclude-path",
        "/api/v1/stream",
        "--exclude-path",
        "/api/v1/users/logout",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "25",
        "--seed",
        "18",
        "--no-color",
        "--report-dir",
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 280)
    report = output.decode()
    assert process.returncode == 0, report
    assert "No issues found" in report or "passed" in report, report
