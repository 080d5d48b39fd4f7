"""`make new-service NAME=<domain>`: a new domain service, generated whole (decision 0026).

    python -m polar_dev.new_service pledge            # create services/pledge and its entries
    python -m polar_dev.new_service pledge --remove   # delete them again, exactly

Creating writes the files of `templates/` (paths and contents with `$domain`, `$Domain`,
`$port`... filled in: string.Template, so `$$` is a literal dollar) and inserts the service's
lines into the files every service appears in (`EDITS`: the workspace, the image, compose,
Kubernetes, the README). Removing deletes the files and exactly those lines, so generating
then removing leaves the repository as it was (tests/test_new_service.py checks it in a
clone). The make target then relocks the workspace and regenerates the code from protos/.
"""

from __future__ import annotations

import argparse
import re
import shutil
import string
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..paths import repo_root
from ..services import discover_services

TEMPLATES = Path(__file__).resolve().parent / "templates"
NAME = re.compile(r"[a-z]{2,20}")
# Names taken by a package, a proto package or a tool: a domain cannot be one of them.
RESERVED = frozenset(
    {"api", "client", "common", "db", "dev", "events", "google", "kit", "options", "proto"}
)
FIRST_GRPC_PORT = 50051
LAST_GRPC_PORT = 50099


class GenerationError(Exception):
    """Something the person running the command must fix first."""


@dataclass(frozen=True)
class Names:
    domain: str  # pledge
    port: int

    @property
    def values(self) -> dict[str, str]:
        plural = _plural(self.domain)
        return {
            "domain": self.domain,
            "Domain": self.domain.capitalize(),
            "DOMAIN": self.domain.upper(),
            "domains": plural,
            "Domains": plural.capitalize(),
            "package": f"polar_{self.domain}",
            "project": f"polar-{self.domain}",
            "port": str(self.port),
        }


def _plural(word: str) -> str:
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


# --- edits of shared files ---------------------------------------------------------------------


@dataclass(frozen=True)
class Insert:
    """`text` inserted at the end (or start) of every match of `anchor` in `path` (at least
    one); removal deletes each copy of `text`, which must be unique to the service."""

    path: str
    anchor: str  # a regular expression (MULTILINE)
    text: str
    before: bool = False
    every: bool = False  # every match, else the first

    def apply(self, content: str, values: dict[str, str]) -> str:
        text = string.Template(self.text).substitute(values)
        anchor = string.Template(self.anchor).substitute(values)
        if text in content:
            raise GenerationError(f"{self.path} already holds {text.strip()!r}")
        matches = list(re.finditer(anchor, content, re.M))
        if not matches:
            raise GenerationError(f"{self.path}: no line matching {anchor!r} to insert after")
        for match in reversed(matches if self.every else matches[:1]):
            at = match.start() if self.before else match.end()
            content = content[:at] + text + content[at:]
        return content

    def revert(self, content: str, values: dict[str, str]) -> str:
        text = string.Template(self.text).substitute(values)
        return content.replace(text, "")


@dataclass(frozen=True)
class SortedLine:
    """One line placed in sorted order among the lines of a block (imports, `__all__`), so
    ruff's sorting rules hold; removal deletes that line."""

    path: str
    block: str  # a regular expression matching the whole block (MULTILINE)
    item: str  # a regular expression capturing the sort key of one line of the block
    line: str  # the new line, with its newline

    def apply(self, content: str, values: dict[str, str]) -> str:
        line = string.Template(self.line).substitute(values)
        block = re.search(self.block, content, re.M)
        if block is None:
            raise GenerationError(f"{self.path}: no block matching {self.block!r}")
        if line in block.group(0):
            raise GenerationError(f"{self.path} already holds {line.strip()!r}")
        key = _sort_key(re.match(self.item, line))
        at = block.end()
        for found in re.finditer(self.item, block.group(0), re.M):
            if _sort_key(found) > key:
                at = block.start() + found.start()
                break
        return content[:at] + line + content[at:]

    def revert(self, content: str, values: dict[str, str]) -> str:
        return content.replace(string.Template(self.line).substitute(values), "", 1)


def _sort_key(match: re.Match[str] | None) -> str:
    if match is None:
        raise GenerationError("a generated line does not match its block's pattern")
    # ruff's order for `__all__`: SCREAMING_CASE names first, then the others.
    key = match.group(1)
    return f"0{key}" if key.isupper() else f"1{key}"


Edit = Insert | SortedLine

EDITS: tuple[Edit, ...] = (
    # The uv workspace: the root project installs every member (`make sync`), mypy finds it.
    Insert("pyproject.toml", r"^dependencies = \[\n(?:    .*\n)*", '    "$project",\n'),
    Insert(
        "pyproject.toml",
        r"^\[tool\.uv\.sources\]\n(?:.+\n)*",
        "$project = { workspace = true }\n",
    ),
    Insert("pyproject.toml", r'^mypy_path = "[^"]*', ":services/$domain/src"),
    # Its schema (an owner of tables, decision 0021), and its model re-exported by polar_db.
    Insert(
        "libs/polar_db/src/polar_db/models/base.py",
        r"^OWNERS = \(",
        '$DOMAIN = "$domain"\n',
        before=True,
    ),
    Insert(
        "libs/polar_db/src/polar_db/models/base.py", r"^OWNERS = \([A-Z_, ]*[A-Z_]", ", $DOMAIN"
    ),
    SortedLine(
        "libs/polar_db/src/polar_db/models/__init__.py",
        r"^(?:from polar_db\.models\.\w+ import (?:\([^)]*\)|[^\n]*)\n)+",
        r"from polar_db\.models\.(\w+) import",
        "from polar_db.models.$domain import $Domain\n",
    ),
    SortedLine(
        "libs/polar_db/src/polar_db/models/__init__.py",
        r'^(?:    "\w+",\n)+',
        r'    "(\w+)",',
        '    "$Domain",\n',
    ),
    # The ownership check (tests/test_ownership.py) knows whose tables it may name.
    Insert(
        "tests/test_ownership.py",
        r'^    "gateway": None,\n',
        '    "$domain": "$domain",\n',
        before=True,
    ),
    # What its process exports at /metrics (tests/test_metrics_scrape.py): a gRPC server and
    # an outbox; a consumer, once it has one, adds the polar_consumer_* families.
    Insert("tests/metrics_inventory.yaml", r"^gateway:\n", "$metrics_inventory", before=True),
    # The image: its pyproject for the dependency layer, its package, its port.
    Insert(
        "Dockerfile",
        r"^#   docker run IMAGE polar_gateway ",
        "#   docker run IMAGE $image_line\n",
        before=True,
    ),
    Insert(
        "Dockerfile",
        r"^(?:COPY services/.*\n)+",
        "COPY services/$domain/pyproject.toml services/$domain/\n",
    ),
    Insert("Dockerfile", r"--package polar-gateway", " --package $project", every=True),
    Insert("Dockerfile", r"import polar_organization, [^\"]*?polar_gateway", ", $package"),
    Insert("Dockerfile", r"^EXPOSE [0-9 ]*[0-9]", " $port"),
    Insert(
        ".dockerignore",
        r"^(?:!services/.*\n)+",
        "!services/$domain/pyproject.toml\n!services/$domain/src\n",
    ),
    # docker-compose.yml: the service, before the gateway.
    Insert("docker-compose.yml", r"^#   gateway ", "#   $compose_line\n", before=True),
    Insert("docker-compose.yml", r"^  gateway:\n", "$compose_service", before=True),
    # The observability profile's Prometheus scrapes it (deploy/observability).
    Insert(
        "deploy/observability/prometheus/prometheus.yml",
        r"^  - job_name: polar-gateway\n",
        '  - job_name: polar-$domain\n    static_configs:\n      - targets: ["$domain:9090"]\n',
        before=True,
    ),
    # Kubernetes: its manifests and its ConfigMap.
    Insert(
        "deploy/base/kustomization.yaml",
        r"^  - gateway\.yaml\n",
        "  - $domain.yaml\n",
        before=True,
    ),
    Insert(
        "deploy/base/kustomization.yaml",
        r"^  - name: polar-gateway-config\n",
        "  - name: polar-$domain-config\n    envs: [config/$domain.env]\n",
        before=True,
    ),
    # The README: the layout table and the port setting.
    Insert(
        "README.md",
        r"^\| `services/gateway` \|",
        "| `services/$domain` | $domains (generated by `make new-service`; say what the "
        "domain holds) |\n",
        before=True,
    ),
    Insert(
        "README.md",
        r"^(?:\| `POLAR_[A-Z]+_GRPC_PORT` .*\n)+",
        "| `POLAR_${DOMAIN}_GRPC_PORT` | `$port` | $domain service gRPC port |\n",
    ),
)


def _extra_values(values: dict[str, str]) -> dict[str, str]:
    """Values for the edits whose text is longer than a template line."""
    package, domain, port = values["package"], values["domain"], values["port"]
    compose = (TEMPLATES / "compose-service.yml").read_text()
    inventory = (TEMPLATES / "metrics-inventory.yml").read_text()
    return {
        "image_line": f"{package:<30} gRPC :{port}",
        "compose_line": f"{domain:<13} gRPC :{port}   }}",
        "compose_service": string.Template(compose).substitute(values),
        "metrics_inventory": string.Template(inventory).substitute(values),
    }


# --- the generator -------------------------------------------------------------------------------


def check_name(root: Path, domain: str) -> None:
    if not NAME.fullmatch(domain):
        raise GenerationError(
            f"NAME must be 2-20 lower-case letters (a package, proto package, caller identity "
            f"and Kubernetes name at once), got {domain!r}"
        )
    if domain in RESERVED:
        raise GenerationError(f"{domain!r} is reserved: {sorted(RESERVED)}")


def next_port(root: Path) -> int:
    """One past the highest gRPC port a service declares: no two services share one."""
    ports = [s.port for s in discover_services(root / "services") if s.protocol == "grpc"]
    return max([FIRST_GRPC_PORT - 1, *ports]) + 1


def template_files(values: dict[str, str]) -> Iterator[tuple[Path, Path]]:
    """(template, path in the repository) of every file the service gets."""
    for template in sorted((TEMPLATES / "tree").rglob("*.tmpl")):
        relative = str(template.relative_to(TEMPLATES / "tree")).removesuffix(".tmpl")
        for key in ("package", "domain"):
            relative = relative.replace(f"{{{key}}}", values[key])
        yield template, Path(relative)


def created_paths(root: Path, values: dict[str, str]) -> list[Path]:
    return [root / path for _, path in template_files(values)]


def generate(root: Path, domain: str, port: int | None = None) -> list[str]:
    """Writes the service; returns what to do next, for the person."""
    check_name(root, domain)
    if (root / "services" / domain).exists() or (root / "protos/polar" / domain).exists():
        raise GenerationError(f"services/{domain} or protos/polar/{domain} exists already")
    used = {s.port for s in discover_services(root / "services")}
    port = port or next_port(root)
    if port in used:
        raise GenerationError(f"port {port} belongs to another service")
    if not FIRST_GRPC_PORT <= port <= LAST_GRPC_PORT:
        # deploy/base/networkpolicies.yaml opens this range to the gateway and the services.
        raise GenerationError(f"port {port} is outside {FIRST_GRPC_PORT}-{LAST_GRPC_PORT}")
    values = Names(domain, port).values
    values |= _extra_values(values)
    # Edits first: a shared file that does not have the expected shape stops everything
    # before a single file is written.
    edited = _edited(root, values, lambda edit, text: edit.apply(text, values))
    for template, path in template_files(values):
        target = root / path
        if target.exists():
            raise GenerationError(f"{path} exists already")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(string.Template(template.read_text()).substitute(values))
    for path, text in edited.items():
        path.write_text(text)
    _format([root / path for _, path in template_files(values) if path.suffix == ".py"])
    return [
        f"services/{domain} listens on :{port}; its schema and role: {domain}, polar_{domain};",
        f"its migrations: libs/polar_db/src/polar_db/migrations/{domain}/.",
        "Next (CONTRIBUTING.md, 'Add a service'): fill in the resource's fields in",
        f"protos/polar/{domain}/v1/ and libs/polar_db/src/polar_db/models/{domain}.py, the",
        f"rules in services/{domain}/src/polar_{domain}/service.py, who may call what",
        "(CALLERS in app.py), then `make gen` and `make test`.",
    ]


def remove(root: Path, domain: str) -> list[str]:
    """Deletes what `generate` wrote and the lines it inserted."""
    check_name(root, domain)
    spec = next((s for s in discover_services(root / "services") if s.name == domain), None)
    if spec is None:
        raise GenerationError(f"services/{domain} is not a service")
    values = Names(domain, spec.port).values
    values |= _extra_values(values)
    edited = _edited(root, values, lambda edit, text: edit.revert(text, values))
    for path, text in edited.items():
        path.write_text(text)
    for path in created_paths(root, values):
        if path.is_file():
            path.unlink()
    for folder in (
        root / "services" / domain,
        root / "libs/polar_db/src/polar_db/models" / domain,
        root / "libs/polar_db/src/polar_db/migrations" / domain,
        root / "protos/polar" / domain,
        root / "libs/polar_proto/src/polar" / domain,
    ):
        shutil.rmtree(folder, ignore_errors=True)
    return [f"services/{domain} and its entries are gone; `make gen` drops its generated code."]


def _format(paths: list[Path]) -> None:
    """ruff's import order and formatting: the templates need not fit every name's length."""
    ruff = shutil.which("ruff") or shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff is None:
        raise GenerationError("ruff is not installed (run through `make new-service`)")
    names = [str(p) for p in paths]
    subprocess.run([ruff, "check", "--quiet", "--fix", "--select", "I", *names], check=True)
    subprocess.run([ruff, "format", "--quiet", *names], check=True)


def _edited(
    root: Path, values: dict[str, str], change: Callable[[Edit, str], str]
) -> dict[Path, str]:
    contents: dict[Path, str] = {}
    for edit in EDITS:
        path = root / edit.path
        contents[path] = change(edit, contents.get(path, path.read_text()))
    return contents


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m polar_dev.new_service", description=__doc__)
    parser.add_argument("name", help="the domain, e.g. pledge (lower-case letters)")
    parser.add_argument("--remove", action="store_true", help="delete a generated service")
    parser.add_argument("--port", type=int, help="gRPC port (default: one past the highest)")
    args = parser.parse_args(argv)
    root = repo_root()
    tomllib.loads((root / "pyproject.toml").read_text())  # a workspace root, readable
    try:
        lines = remove(root, args.name) if args.remove else generate(root, args.name, args.port)
    except GenerationError as err:
        print(f"new-service: {err}", file=sys.stderr)
        return 1
    print(*lines, sep="\n")
    return 0
