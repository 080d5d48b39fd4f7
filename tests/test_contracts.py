"""The event contracts: declared once in the protos, generated everywhere else.

Each event message's `polar.options.v1.event` option is the single source of its subject and
stream; scripts/gen_protos.py derives from it polar/catalog.py (imported by producers and
consumers), the README's event table and docs/asyncapi.yaml. These tests fail when one of
them drifts, when a service spells a subject by hand, or when the AsyncAPI document is not
valid AsyncAPI 3.0.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml
from polar import catalog
from polar.repository.v1 import events_pb2 as repository_events
from polar_kit.nats import STREAMS, subject_matches

ROOT = Path(__file__).resolve().parent.parent
# AsyncAPI's own JSON schema for 3.0.0 (npm @asyncapi/specs 6.11.1, schemas/3.0.0-without-$id.json,
# Apache-2.0), pinned here so the check needs no network.
ASYNCAPI_SCHEMA = ROOT / "tests" / "schemas" / "asyncapi-3.0.0.json"
SUBJECT_LITERAL = re.compile(r"""["']polar\.[a-z_]+\.v\d+\.[a-z_]+["']""")
PROTO_SRC = ROOT / "libs" / "polar_proto" / "src"


def event_modules() -> list[ModuleType]:
    """Every domain's generated events module (polar/<domain>/v<n>/events_pb2.py)."""
    return [
        importlib.import_module(".".join(path.relative_to(PROTO_SRC).with_suffix("").parts))
        for path in sorted(PROTO_SRC.glob("polar/*/v*/events_pb2.py"))
    ]


@functools.cache
def gen_protos() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses need it
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def specs() -> list[Any]:
    # The descriptors of the installed (committed) generated code.
    return list(gen_protos().event_specs(ROOT / "libs" / "polar_proto" / "src"))


def test_every_event_message_is_in_the_registry() -> None:
    declared = {
        m.DESCRIPTOR.full_name
        for module in event_modules()
        for m in vars(module).values()
        if isinstance(m, type) and hasattr(m, "DESCRIPTOR")
    }
    assert declared == set(catalog.BY_TYPE)
    issue_created = repository_events.IssueCreated()
    assert catalog.subject_of(issue_created) == "polar.repository.v1.issue_created"
    assert catalog.REPOSITORY_SYNC_FAILED.message is repository_events.RepositorySyncFailed


@pytest.mark.parametrize("event", catalog.EVENTS, ids=lambda e: e.subject)
def test_every_event_goes_to_a_stream_that_keeps_it(event: catalog.EventType) -> None:
    [stream] = [s for s in STREAMS if s.name == event.stream]
    assert any(subject_matches(pattern, event.subject) for pattern in stream.subjects)


def test_readme_catalog_is_generated(specs: list[Any]) -> None:
    readme = (ROOT / "README.md").read_text()
    assert gen_protos().render_readme(specs, readme) == readme, "README is stale: make gen"


def test_asyncapi_document_is_generated_and_valid(specs: list[Any]) -> None:
    path = ROOT / "docs" / "asyncapi.yaml"
    assert gen_protos().render_asyncapi(specs) == path.read_text(), "stale: make gen"
    document = yaml.safe_load(path.read_text())
    schema = json.loads(ASYNCAPI_SCHEMA.read_text())
    jsonschema.Draft7Validator(schema).validate(document)
    addresses = {c["address"] for c in document["channels"].values()}
    assert addresses == {e.subject for e in catalog.EVENTS}


def test_the_asyncapi_check_rejects_an_invalid_document() -> None:
    schema = json.loads(ASYNCAPI_SCHEMA.read_text())
    bad = {"asyncapi": "3.0.0", "info": {"title": "x"}, "channels": {"c": {"address": 5}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(bad)


def test_no_subject_literals_in_services() -> None:
    """Subjects of domain events come from polar.catalog, never spelled out by hand."""
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted(ROOT.glob("services/*/src/**/*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if SUBJECT_LITERAL.search(line)
    ]
    assert not found, found


# --- safe evolution: buf breaking against the recorded baseline --------------------------------

BUF = ROOT / ".tools" / "node_modules" / ".bin" / "buf"  # installed by `make buf-lint`


def buf_breaking(protos: Path) -> subprocess.CompletedProcess[str]:
    assert BUF.exists(), "buf is not installed: run `make buf-lint` (needs npm)"
    return subprocess.run(
        [str(BUF), "breaking", "--against", str(ROOT / "protos" / "baseline.binpb")],
        cwd=protos,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_protos_keep_the_baseline_contract() -> None:
    result = buf_breaking(ROOT / "protos")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_breaking_change_fails_the_gate(tmp_path: Path) -> None:
    """What `make buf-breaking` (part of `make test`) reports for a removed or renumbered field."""
    protos = tmp_path / "protos"
    shutil.copytree(ROOT / "protos", protos)
    issue = protos / "polar" / "repository" / "v1" / "repository.proto"
    text = issue.read_text()
    assert "  string title = 7;\n" in text
    issue.write_text(text.replace("  string title = 7;\n", "  string title = 70;\n", 1))
    result = buf_breaking(protos)
    assert result.returncode != 0
    assert 'Previously present field "7" with name "title"' in result.stdout, result.stdout
