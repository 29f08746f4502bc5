"""llm_agg in real dbt runs against the local server: one answer per group, built as a tree of cached
leaves and merges, so a rerun, a reordering or a few changed texts cost (almost) nothing."""

from __future__ import annotations

import random

from conftest import DbtProject

from dbt_llm.functions.agg_tree import Tree, build_tree

MODEL = """select product, {{{{ dbt_llm.llm_agg('review', 'What do customers complain about?'{args}) }}}} as v
from {{{{ ref('reviews') }}}} group by product
"""


def reviews(n: int, product: str = "p", seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    words = ["late", "broken", "refund", "great", "slow", "support", "price", "box", "color", "size"]
    return [
        (product, f"{product}{i} " + " ".join(rng.choice(words) for _ in range(rng.randint(2, 6)))) for i in range(n)
    ]


def seed(project: DbtProject, rows: list[tuple[str, str | None]]) -> None:
    lines = ["product,review"] + [f"{p},{'' if r is None else r}" for p, r in rows]
    project.write("seeds/reviews.csv", "\n".join(lines) + "\n")
    project.dbt("seed")


def build(project: DbtProject, rows: list[tuple[str, str | None]], args: str = "", *, ok: bool = True) -> None:
    seed(project, rows)
    project.write("models/m.sql", MODEL.format(args=args))
    project.server.reset()
    project.dbt("run", ok=ok)


def audit(project: DbtProject) -> tuple[int, int, int, int, int]:
    """(api_calls, rows, cache_hits, failed_rows, skipped_rows) of the last run's agg row, which equal the server's."""
    row = project.query(
        "select api_calls, rows, cache_hits, failed_rows, skipped_rows, prompt_tokens from dbt_llm.llm_audit "
        "where function = 'agg' order by started_at desc limit 1"
    )[0]
    sent = project.server.requests
    assert row[0] == len(sent) and row[5] == sum(r.prompt_tokens for r in sent if r.status == 200)
    return row[:5]


def trees(project: DbtProject, rows: list[tuple[str, str | None]], max_chars: int) -> dict[str, Tree]:
    """Each group's tree as the run built it (the spec_hash of the call is in llm_calls)."""
    [(spec_hash,)] = project.query("select distinct spec_hash from dbt_llm.llm_calls where function = 'agg'")
    built = {g: build_tree(spec_hash, [r for p, r in rows if p == g and r], max_chars) for g, _ in rows}
    return {g: t for g, t in built.items() if t is not None}


def answers(project: DbtProject) -> dict[str, str | None]:
    return dict(project.query("select product, v from m"))


def test_one_answer_per_group_one_call_for_a_small_group_and_nothing_on_a_rerun(project: DbtProject) -> None:
    rows: list[tuple[str, str | None]] = [("a", "the box was broken"), ("b", "late delivery"), ("b", "too slow")]
    rows += [("b", None), ("c", None), ("c", "   ")]
    build(project, rows)
    got = answers(project)
    assert got["a"] == "Reply to: the box was broken"  # one text: one leaf, the root, one call
    assert got["b"] is not None and "late delivery" in got["b"] and "too slow" in got["b"]
    assert got["c"] is None  # no text: NULL, no call
    assert len(project.server.requests) == 2
    assert audit(project) == (2, 2, 0, 0, 0)
    build(project, rows)  # a rerun
    assert project.server.requests == [] and answers(project) == got
    build(project, rows[::-1])  # the same texts in another order
    assert project.server.requests == [] and answers(project) == got
    assert audit(project) == (0, 2, 2, 0, 0)


def test_a_first_build_asks_each_leaf_and_merge_once(project: DbtProject) -> None:
    project.plugin_config["max_input_chars"] = 120
    rows = reviews(60, "p") + reviews(25, "q", seed=1)
    build(project, rows)
    nodes = sum(len(t.nodes) for t in trees(project, rows, 120).values())
    merges = [r for r in project.server.requests if "Reply to: " in r.text]  # children's answers
    assert len(project.server.requests) == nodes and 0 < len(merges) < nodes  # leaves plus merges, each once
    assert all(v and v.startswith("Reply to: ") for v in answers(project).values())
    assert audit(project) == (nodes, 2, 0, 0, 0)
    build(project, rows[::-1])
    assert project.server.requests == []


def test_texts_added_to_or_removed_from_a_large_group_ask_only_the_nodes_they_touch(project: DbtProject) -> None:
    project.plugin_config["max_input_chars"] = 100
    rows = reviews(400, "p") + reviews(3, "q", seed=2)
    build(project, rows)
    before = trees(project, rows, 100)["p"]
    rebuild = len(before.nodes)
    assert len(project.server.requests) == rebuild + len(trees(project, rows, 100)["q"].nodes)
    first = answers(project)

    added = [*rows, ("p", "p900 the lid came off"), ("p", "p901 wrong color"), ("p", "p902 smells odd")]
    build(project, added)
    after = trees(project, added, 100)["p"]
    asked = len(project.server.requests)
    # Exactly the nodes whose inputs changed: the leaves the texts fall in and the merges above them.
    assert asked == len(after.needed(before.nodes))
    assert 0 < asked <= 3 * (2 + after.depth + 1) and asked * 5 < rebuild
    assert audit(project) == (asked, 2, 1, 0, 0)  # group q: cached
    assert answers(project)["q"] == first["q"] and answers(project)["p"] != first["p"]

    removed = [r for r in added if r[1] not in (rows[20][1], rows[200][1], rows[300][1])]
    build(project, removed)
    asked = len(project.server.requests)
    assert asked == len(trees(project, removed, 100)["p"].needed(after.nodes))
    assert 0 < asked <= 3 * (2 + after.depth + 1) and asked * 5 < rebuild

    build(project, rows)  # back to the first texts: every node is cached
    assert project.server.requests == [] and answers(project) == first


def test_a_dry_run_counts_the_calls_the_tree_would_make_and_sends_none(project: DbtProject) -> None:
    project.plugin_config["max_input_chars"] = 100
    rows = reviews(80, "p")
    seed(project, rows)
    project.write("models/m.sql", MODEL.format(args=""))
    project.dbt("run", "--vars", "{dbt_llm_dry_run: true}")
    assert project.server.requests == []
    [(estimated, status)] = project.query("select est_requests, status from dbt_llm.llm_audit where function = 'agg'")
    assert status == "dry_run"
    build(project, rows)
    assert estimated == len(project.server.requests) == len(trees(project, rows, 100)["p"].nodes)


def test_a_failed_leaf_is_recorded_fails_the_model_and_keeps_every_other_answer(project: DbtProject) -> None:
    project.plugin_config.update(max_input_chars=100, max_attempts=1)
    rows = [*reviews(60, "p"), ("q", "q0 all fine")]
    seed(project, rows)
    project.write("models/m.sql", MODEL.format(args=""))
    project.server.inject("500", times=1, match="p7 ")
    done = project.dbt("run", ok=False)
    assert "llm_errors" in str(done.exception or done.result)
    sent = len(project.server.requests)
    [(function, _kind)] = project.query("select function, error_kind from dbt_llm.llm_errors")
    assert function == "agg"
    assert audit(project)[3] == 1  # the group whose leaf failed; q was answered
    # Nothing paid for is lost: the next run asks the failed leaf and the merges above it only.
    build(project, rows)
    tree = trees(project, rows, 100)["p"]
    assert 0 < len(project.server.requests) <= tree.depth + 1 < sent
    assert all(answers(project).values())


def test_on_error_null_keeps_null_for_a_group_whose_tree_failed(project: DbtProject) -> None:
    project.plugin_config.update(max_input_chars=100, max_attempts=1, on_error="null")
    build(project, [*reviews(40, "p"), ("q", "q0 all fine")])
    project.server.reset()
    project.server.inject("500", times=1, match="p7 ")
    project.dbt("run", "--full-refresh")  # nothing failed so far: all cached, no call
    assert project.server.requests == []
    project.plugin_config["max_input_chars"] = 90  # another tree: every leaf asked again, one fails
    project.dbt("run")
    assert answers(project)["p"] is None and answers(project)["q"] == "Reply to: q0 all fine"
    assert audit(project)[3] == 1
    assert project.query("select count(*) from dbt_llm.llm_errors where function = 'agg'") == [(1,)]


def test_a_budget_stops_the_tree_and_the_next_run_asks_only_the_rest(project: DbtProject) -> None:
    project.plugin_config.update(max_input_chars=100, max_cost_usd=0.0005)
    rows = reviews(200, "p")
    build(project, rows, ok=False)
    first = len(project.server.requests)
    _calls, _rows, _hits, _failed, skipped = audit(project)
    assert skipped == 1 and first > 0
    project.plugin_config["max_cost_usd"] = None
    build(project, rows)
    assert first + len(project.server.requests) == len(trees(project, rows, 100)["p"].nodes)
