"""Regenerate the gateway's /api/v2 OpenAPI document and the typed client generated from it.

`python scripts/gen_client.py` writes docs/openapi-v2.json (from the gateway's routes, as
served at /api/v2/openapi.json) and libs/polar_client/src/polar_client (openapi-python-client);
`--check` regenerates into a temporary folder and fails when either differs (CI runs this).
"""

from __future__ import annotations

import filecmp
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "docs" / "openapi-v2.json"
PACKAGE = ROOT / "libs" / "polar_client" / "src" / "polar_client"
# post_hooks: none of the generator's own (they format with whatever ruff is on PATH);
# generate() formats with this repository's settings instead.
CONFIG = """\
project_name_override: polar-client
package_name_override: polar_client
post_hooks: []
"""


def document() -> str:
    from polar_gateway.app import create_app
    from polar_gateway.docs import openapi_document
    from polar_gateway.routes._common import V2
    from polar_gateway.settings import GatewaySettings

    # The defaults, not this machine's POLAR_* environment: the same document everywhere.
    settings = GatewaySettings.model_construct(dev_mode=True)
    doc = openapi_document(create_app(settings), V2, settings)
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def generate(doc: Path, out: Path) -> None:
    config = out.parent / "config.yaml"
    config.write_text(CONFIG)
    tool = Path(sys.executable).parent / "openapi-python-client"
    command = [str(tool), "generate", "--path", str(doc), "--output-path", str(out)]
    subprocess.run([*command, "--meta", "none", "--config", str(config)], check=True)
    # Formatted and linted like the rest of the repository.
    ruff = Path(sys.executable).parent / "ruff"
    settings = ["--config", str(ROOT / "pyproject.toml"), "--quiet", "--no-cache"]
    fix = ["check", "--fix", "--exit-zero", "--output-format", "concise"]
    subprocess.run([str(ruff), *fix, *settings, str(out)], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([str(ruff), "format", *settings, str(out)], check=True)
    (out / "py.typed").touch()


def tree(root: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(root)): p
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def main() -> int:
    text = document()
    with tempfile.TemporaryDirectory() as tmp:
        doc = Path(tmp) / "openapi-v2.json"
        doc.write_text(text)
        out = Path(tmp) / "work" / "polar_client"
        out.parent.mkdir()
        generate(doc, out)
        if "--check" in sys.argv:
            new, old = tree(out), tree(PACKAGE) if PACKAGE.exists() else {}
            stale = sorted(set(new) ^ set(old)) + sorted(
                k for k in set(new) & set(old) if not filecmp.cmp(new[k], old[k], shallow=False)
            )
            if not DOCUMENT.exists() or DOCUMENT.read_text() != text:
                stale.insert(0, str(DOCUMENT.relative_to(ROOT)))
            if stale:
                print("the HTTP client is stale; run `make gen`:", *stale, sep="\n  ")
                return 1
            print("the HTTP client is up to date")
            return 0
        DOCUMENT.write_text(text)
        shutil.rmtree(PACKAGE, ignore_errors=True)
        shutil.copytree(out, PACKAGE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
