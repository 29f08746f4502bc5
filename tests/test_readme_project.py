"""The README's "Use it in your dbt project" as written: its packages.yml line (`dbt deps` from a clone next
to the project), its complete dbt_project.yml and its microbatch model (each batch reads only its rows)."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest
import yaml
from conftest import API_KEY, PRICES, REPO
from dbt.cli.main import dbtRunner
from openai_server import FakeOpenAI

pytestmark = pytest.mark.dbt


def readme_block(lang: str, must_hold: str) -> str:
    """The one fenced block of the README in `lang` that holds `must_hold`."""
    blocks = re.findall(rf"^ *```{lang}\n(.*?)^ *```", (REPO / "README.md").read_text(), re.S | re.M)
    [block] = [b for b in blocks if must_hold in b]
    return block


def test_the_readme_project_installs_from_a_clone_and_its_microbatch_batches_read_their_rows(
    tmp_path: Path, server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dbt-llm").symlink_to(REPO)  # the clone, next to the project as the README has it
    root = tmp_path / "my_project"
    (root / "models").mkdir(parents=True)
    (root / "seeds").mkdir()
    (root / "packages.yml").write_text(readme_block("yaml", "- local: ../dbt-llm"))
    (root / "dbt_project.yml").write_text(readme_block("yaml", "name: my_project"))
    (root / "models/tickets.sql").write_text(readme_block("sql", "incremental_strategy='microbatch'"))
    days = ("2026-11-28", "2026-11-29", "2026-11-30")
    rows = [f"{i},{day} 09:00:00,ticket {i}: my invoice is wrong" for i, day in enumerate(days)]
    (root / "seeds/raw_tickets.csv").write_text("id,created_at,body\n" + "\n".join(rows) + "\n")
    config = {"provider": "openai", "model": "gpt-4o-mini", "base_url": server.base_url, "prices": PRICES}
    output = {
        "type": "duckdb",
        "path": str(root / "w.duckdb"),
        "plugins": [{"module": "dbt_llm.plugin", "config": config}],
    }
    (root / "profiles.yml").write_text(yaml.safe_dump({"my_project": {"target": "dev", "outputs": {"dev": output}}}))
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.chdir(root)
    where = ["--project-dir", str(root), "--profiles-dir", str(root)]
    for command in (["deps"], ["seed"], ["run", "--event-time-start", days[0], "--event-time-end", "2026-12-01"]):
        result = dbtRunner().invoke([*command, *where])
        assert result.success, f"dbt {command} failed: {result.exception}"
    assert (root / "dbt_packages/dbt_llm/macros/llm_classify.sql").exists()
    [run] = result.result.results
    assert len(run.batch_results.successful) == 3
    # One request per ticket, and each batch's audit row counts its own day's row only.
    assert sorted(r.text for r in server.requests) == sorted(r.split(",")[2] for r in rows)
    with duckdb.connect(str(root / "w.duckdb")) as con:
        assert con.execute("select batch_id, rows from dbt_llm.llm_audit order by 1").fetchall() == [
            ("20261128", 1),
            ("20261129", 1),
            ("20261130", 1),
        ]
