"""The gateway's operator tools: send_webhooks orders deliveries as GitHub would send them."""

from pathlib import Path

from polar_gateway.send_webhooks import payloads


def test_deliveries_go_out_parents_first_then_by_time_then_by_action(
    github_fixtures: Path,
) -> None:
    webhooks = github_fixtures / "webhooks"
    order = payloads(
        [webhooks / "issues", webhooks / "installation_repositories", webhooks / "installation"]
    )
    names = [f"{event}/{file.name}" for event, file in order]

    # Installations before their repositories, repositories before issues.
    assert names.index("installation/created.payload.json") < names.index(
        "installation_repositories/added.payload.json"
    )
    assert max(i for i, n in enumerate(names) if n.startswith("installation")) < min(
        i for i, n in enumerate(names) if n.startswith("issues/")
    )
    # Alphabetically "deleted" comes before "opened"; GitHub sends it after.
    assert names.index("issues/opened.payload.json") < names.index("issues/deleted.payload.json")
    # Same updated_at: the creation first.
    assert names.index("issues/opened.payload.json") < names.index("issues/edited.payload.json")
