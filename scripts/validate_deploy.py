"""`make deploy-check`: docker-compose.yml, .env.example, the Dockerfile and deploy/ checked
without Docker or a Kubernetes cluster. What is and is not checked: scripts/deploy_check.

Usage: python scripts/validate_deploy.py [--no-build]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deploy_check.common import ROOT, Report, discover_services
from deploy_check.compose import check_compose
from deploy_check.image import check_image
from deploy_check.kubernetes import check_kubernetes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--no-build", action="store_true", help="skip the simulated image build")
    args = parser.parse_args(argv)
    sys.path[:0] = [
        str(p) for p in sorted(ROOT.glob("services/*/src")) + sorted(ROOT.glob("libs/*/src"))
    ]
    report = Report()
    services = discover_services()
    sections: list[tuple[str, Callable[[], None]]] = [
        ("compose", lambda: check_compose(report, services)),
        ("image", lambda: check_image(report, services, build=not args.no_build)),
        ("kubernetes", lambda: check_kubernetes(report, services)),
    ]
    for name, section in sections:
        try:
            section()
        except Exception as exc:  # a malformed file: report it, go on with the other sections
            report.section = name
            report.check(False, "the checks ran to the end", f"{type(exc).__name__}: {exc}")
    print()
    for line in report.skipped:
        print(f"skipped: {line}")
    if report.failed:
        for line in report.failed:
            print(f"FAILED: {line}")
        total = report.passed + len(report.failed)
        print(f"deploy-check: {len(report.failed)} of {total} checks FAILED")
        return 1
    print(f"deploy-check: all {report.passed} checks OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
