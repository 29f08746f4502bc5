"""Fixtures: a real local OpenAI-compatible server, and throwaway dbt projects on a
temp DuckDB file that use this repo as a dbt package."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from dbt.cli.main import dbtRunner, dbtRunnerResult
from hypothesis import settings

sys.path.insert(0, str(Path(__file__).parent))

# A suite started in the background of a script (`make test &`) inherits SIGINT ignored, and so would
# every dbt and server process it starts: the tests that press Ctrl-C need a terminal's SIGINT.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
from openai_server import FakeOpenAI

# Property tests run on a busy 2-core machine beside dbt runs: no per-example deadline (a slow example is
# not a wrong one), and under CI the same examples every run, so a red build is a real failure.
settings.register_profile("dbt_llm", deadline=None, derandomize=os.environ.get("CI") == "true")
settings.load_profile("dbt_llm")

REPO = Path(__file__).resolve().parent.parent
API_KEY = "sk-test-0123456789abcdef-SECRET"
PRICES = {"gpt-4o-mini": {"input": 0.15, "output": 0.60}}


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=API_KEY, hang_seconds=5.0) as fake:
        yield fake


def is_classify(req: Any) -> bool:
    return bool(req.schema and "label" in req.schema.get("properties", {}))


class DbtProject:
    """A dbt project in a temp dir, profile pointing at the fake server."""

    def __init__(self, root: Path, server: FakeOpenAI) -> None:
        self.root = root
        self.server = server
        self.db_path = root / "warehouse.duckdb"
        self.plugin_config: dict[str, Any] = {
            "provider": "openai",
            "model": "gpt-4o-mini",
            "base_url": server.base_url,
            "api_key_env": "DBT_LLM_TEST_KEY",
            "max_concurrency": 8,
            "prices": PRICES,
            "request_timeout": 5.0,  # generous: a loaded 2-core CI machine can stall a local answer a second or two
            "max_attempts": 4,
        }
        self.settings: dict[str, Any] = {}
        self.threads = 4
        self.with_plugin = True

    def write_profiles(self) -> None:
        output: dict[str, Any] = {
            "type": "duckdb",
            "path": str(self.db_path),
            "threads": self.threads,
        }
        if self.with_plugin:
            output["plugins"] = [{"module": "dbt_llm.plugin", "config": self.plugin_config}]
        if self.settings:
            output["settings"] = self.settings
        profile = {"dbt_llm_example": {"target": "test", "outputs": {"test": output}}}
        (self.root / "profiles.yml").write_text(yaml.safe_dump(profile))

    def write(self, relative: str, text: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def dbt(self, *args: str, ok: bool = True) -> dbtRunnerResult:
        self.write_profiles()
        result = dbtRunner().invoke([*args, "--project-dir", str(self.root), "--profiles-dir", str(self.root)])
        if ok:
            assert result.success, f"dbt {' '.join(args)} failed: {result.exception}"
        return result

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.db_path)) as con:
            return con.execute(sql, params or []).fetchall()

    def execute(self, sql: str) -> None:
        with duckdb.connect(str(self.db_path)) as con:
            con.execute(sql)


def make_project(tmp_path: Path, server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, *, example: bool) -> DbtProject:
    root = tmp_path / "project"
    if example:
        shutil.copytree(
            REPO / "example_project", root, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages", "*.duckdb*")
        )
    else:
        root.mkdir()
        (root / "dbt_project.yml").write_text(
            "name: dbt_llm_example\nversion: '1.0.0'\nconfig-version: 2\nprofile: dbt_llm_example\n"
            "models:\n  +materialized: table\n"
        )
    (root / "packages.yml").write_text(yaml.safe_dump({"packages": [{"local": str(REPO)}]}))
    monkeypatch.setenv("DBT_LLM_TEST_KEY", API_KEY)
    monkeypatch.chdir(root)
    project = DbtProject(root, server)
    project.dbt("deps")
    return project


@pytest.fixture
def example(tmp_path: Path, server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> DbtProject:
    """A copy of example_project/ against the fake server."""
    return make_project(tmp_path, server, monkeypatch, example=True)


@pytest.fixture
def project(tmp_path: Path, server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> DbtProject:
    """An empty dbt project; tests write their own seeds and models."""
    return make_project(tmp_path, server, monkeypatch, example=False)


# Fixtures that run real dbt: tests using them are `dbt` tests; `make unit` runs all the others.
DBT_FIXTURES = frozenset({"project", "example", "tickets"})


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "dbt: runs real dbt (deps, seed, run) on a DuckDB file; `make unit` skips it")
    config.addinivalue_line("markers", "spark: runs dbt-spark on a local Spark session through `dbt-llm spark`")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if DBT_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.dbt)


@pytest.fixture(autouse=True)
def _no_real_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # No test may reach a real provider with a real key.
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
