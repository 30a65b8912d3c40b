"""The single entry point for tests, lint, typing, docs, benchmarks and the demo.

nox -s tests        # the whole test suite on SQLite, then the PostgreSQL pass (installs anvil
                    # from npm into .tools/, chromium and postgresql with apt when missing)
nox -s lint         # ruff check (complexity limits too) + format check + import layering
nox -s typing       # mypy --strict over src
nox -s docs         # the docs site into site/ (mkdocs --strict; runs the policy-lab notebook)
nox -s benchmarks   # every benchmarks/bench_*.py, JSON lines into benchmarks/results/
nox -s demo         # python -m waiaas demo
"""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typing", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "venv"

ROOT = Path(__file__).resolve().parent
TOOLS = ROOT / ".tools"
ANVIL = TOOLS / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
PYTHON = "3.11"


def _install_anvil(session: nox.Session) -> str:
    """Install the anvil binary from npm (@foundry-rs/anvil) into .tools/ once."""
    if not ANVIL.exists():
        TOOLS.mkdir(exist_ok=True)
        session.run(
            "npm",
            "install",
            "--no-audit",
            "--no-fund",
            "--prefix",
            str(TOOLS),
            "@foundry-rs/anvil",
            external=True,
        )
    if not ANVIL.exists():
        session.error(f"anvil binary not found at {ANVIL} after npm install")
    return str(ANVIL)


def _install_chromium(session: nox.Session) -> None:
    """Install Debian's chromium and chromium-driver (the approval page's browser tests) when
    missing; needs root, as on CI and the development machines."""
    if shutil.which("chromium") and shutil.which("chromedriver"):
        return
    if os.geteuid() != 0:
        session.error("chromium/chromedriver missing: apt-get install chromium chromium-driver")
    session.run("apt-get", "update", "-q", external=True)
    session.run(
        "apt-get",
        "install",
        "-y",
        "-q",
        "chromium",
        "chromium-driver",
        external=True,
        env={"DEBIAN_FRONTEND": "noninteractive"},
    )


def _install_postgresql(session: nox.Session) -> None:
    """Install Debian's ``postgresql`` (the server binaries the tests start a private server
    from, ``/usr/lib/postgresql/*/bin``) when missing; needs root, as chromium does."""
    if glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        return
    if os.geteuid() != 0:
        session.error("PostgreSQL binaries missing: apt-get install postgresql")
    session.run("apt-get", "update", "-q", external=True)
    session.run(
        "apt-get",
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "postgresql",
        external=True,
        env={"DEBIAN_FRONTEND": "noninteractive"},
    )


# The PostgreSQL pass: the end-to-end, security and integration suites (the multi-process
# and crash tests among them) and the other tests that run several writers at once.
POSTGRES_PASS = (
    "tests/e2e",
    "tests/security",
    "tests/integration",
    "tests/unit/test_sessions_cache.py",  # other processes change rows: the next verify sees it
    "tests/unit/test_sessions_constraints.py::test_concurrent_requests_cannot_overshoot",
    "tests/unit/db/test_db_uow.py::test_concurrent_threads_never_overshoot_a_limit",
    "tests/unit/db/test_state_machines.py",  # compare-and-swap transitions, lost races
)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the whole test suite against real SQLite, LiteSVM, eth-tester and anvil, then
    the end-to-end, security, integration and concurrency suites again on a real PostgreSQL
    server (``--backend=postgresql``: a private server the tests start from Debian's
    binaries, every wallet in its own schema; ``WAIAAS_REQUIRE_POSTGRES=1`` so a server that
    cannot start fails the run instead of skipping).

    ``.[test]`` brings the ``local`` chains and every agent framework extra (langchain-core,
    openai-agents, pydantic-ai-slim, mcp), FastAPI and psycopg, so the adapters and the
    PostgreSQL backend are tested for real. ``.[docs]`` brings what the documented examples,
    the notebook (nbclient, ipykernel, pandas, matplotlib) and the strict site build need;
    mypy type-checks a user's script.

    ``nox -s tests -- ARGS`` runs ``pytest ARGS`` once (add ``--backend=postgresql`` for the
    PostgreSQL backend).
    """
    session.install("-e", ".[test,docs]", "mypy>=1.11")
    anvil = _install_anvil(session)
    _install_chromium(session)
    _install_postgresql(session)
    env = {"ANVIL_BIN": anvil, "WAIAAS_REQUIRE_POSTGRES": "1"}
    if session.posargs:
        session.run("python", "-m", "pytest", *session.posargs, env=env)
        return
    # the slowest tests of each pass are listed, to keep the suite's time in view
    quiet = ["-q", "-p", "no:cacheprovider", "--durations=25"]
    session.run("python", "-m", "pytest", *quiet, env=env)
    # the tests that open PostgreSQL by URL themselves ran in the pass above: not again
    after = {**env, "WAIAAS_AFTER_SQLITE_PASS": "1"}
    session.run("python", "-m", "pytest", *quiet, "--backend=postgresql", *POSTGRES_PASS, env=after)


LINTED = ("src", "tests", "benchmarks", "examples", "tools", "conftest.py", "noxfile.py")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check (with complexity limits, pyproject.toml) and ruff format --check; the
    import layering: the pure core (waiaas.policy, waiaas.plan) imports no I/O; no function
    of src/waiaas longer than 60 lines (docstrings not counted)."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", *LINTED)
    session.run("ruff", "format", "--check", *LINTED)
    session.run("python", "tools/check_layers.py")
    session.run("python", "tools/check_function_length.py", "--max", "60")


@nox.session(python=PYTHON)
def typing(session: nox.Session) -> None:
    """mypy --strict over src."""
    session.install("-e", ".[test]", "mypy>=1.11")
    session.run("mypy", "--strict", "src/waiaas")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the docs site (mkdocs-material + mkdocstrings) into site/, strictly: a broken
    link, reference or docstring, or a notebook cell that fails, fails the build."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", *session.posargs, env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session(python=PYTHON)
def benchmarks(session: nox.Session) -> None:
    """Run every benchmark; each prints JSON lines with a same-run baseline."""
    session.install("-e", ".[test]")
    env = {"ANVIL_BIN": _install_anvil(session)}
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        if session.posargs and script.stem not in session.posargs:
            continue
        with (out / f"{script.stem}.jsonl").open("w") as fh:
            session.run("python", str(script), env=env, stdout=fh)
        session.log(f"{script.stem}: {(out / f'{script.stem}.jsonl').read_text()}")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The demo on the in-process local chains (the ``local`` extra brings eth-tester)."""
    session.install(".[local]")
    session.run("python", "-m", "waiaas", "demo", env={"CI": os.environ.get("CI", "")})
