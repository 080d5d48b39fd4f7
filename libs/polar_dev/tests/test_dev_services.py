import re
from pathlib import Path

import pytest
from polar_dev.paths import repo_root
from polar_dev.services import discover_services, read_service


def write(root: Path, name: str, table: str) -> None:
    (root / name).mkdir()
    (root / name / "pyproject.toml").write_text(f'[project]\nname = "{name}"\n{table}')


def test_discovers_declared_services_only(tmp_path: Path) -> None:
    table = '[tool.polar.service]\nmodule = "{}"\nprotocol = "{}"\nport-env = "{}"\nport = {}\n'
    write(tmp_path, "zeta", table.format("z", "http", "Z_PORT", 8000))
    write(tmp_path, "alpha", table.format("a", "grpc", "A_PORT", 50051))
    write(tmp_path, "lib", "[tool.other]\nx = 1\n")

    specs = discover_services(tmp_path)

    assert [(s.name, s.module, s.protocol, s.port_env, s.port) for s in specs] == [
        ("alpha", "a", "grpc", "A_PORT", 50051),
        ("zeta", "z", "http", "Z_PORT", 8000),
    ]
    assert specs[0].address(50099) == "127.0.0.1:50099"
    assert specs[1].address() == "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('module = "a"\nprotocol = "grpc"\nport-env = "A"\n', "`port` (int)"),
        ('module = "a"\nprotocol = "grpc"\nport-env = "A"\nport = "1"\n', "`port` (int)"),
        ('module = "a"\nprotocol = "smtp"\nport-env = "A"\nport = 1\n', "protocol must be one of"),
    ],
)
def test_rejects_incomplete_tables(tmp_path: Path, table: str, message: str) -> None:
    write(tmp_path, "bad", f"[tool.polar.service]\n{table}")
    with pytest.raises(ValueError, match=re.escape(message)):
        read_service(tmp_path / "bad" / "pyproject.toml")


def test_the_organization_service_is_declared() -> None:
    names = {s.name: s for s in discover_services(repo_root() / "services")}
    organization = names["organization"]
    assert (organization.module, organization.protocol, organization.port) == (
        "polar_organization",
        "grpc",
        50051,
    )
