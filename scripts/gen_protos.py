"""Regenerate libs/polar_proto from protos/ (grpcio-tools + mypy-protobuf stubs).

`python scripts/gen_protos.py` rewrites the generated tree; `--check` regenerates into a
temporary folder and fails when the committed code differs (CI runs this).
"""

from __future__ import annotations

import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "libs" / "polar_proto" / "src"


def generate(out: Path) -> None:
    files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"  # google/protobuf/*.proto
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # Regular packages (with __init__.py), so `polar` is importable without namespace magic.
    for d in [out / "polar", *(p for p in (out / "polar").rglob("*") if p.is_dir())]:
        (d / "__init__.py").touch()
    (out / "polar" / "py.typed").touch()


def tree(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in root.rglob("*") if p.is_file()}


def main() -> int:
    if "--check" in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp))
            new, old = tree(Path(tmp)), tree(OUT)
            old = {k: v for k, v in old.items() if "__pycache__" not in k}
            stale = sorted(set(new) ^ set(old)) + sorted(
                k for k in set(new) & set(old) if not filecmp.cmp(new[k], old[k], shallow=False)
            )
            if stale:
                print("generated code is stale; run `make gen`:", *stale, sep="\n  ")
                return 1
            print("generated code is up to date")
            return 0
    shutil.rmtree(OUT / "polar", ignore_errors=True)
    generate(OUT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
