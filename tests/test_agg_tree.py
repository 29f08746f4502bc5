"""llm_agg's tree (functions/agg_tree.py), with no dbt: leaves are content-defined and bounded, keys
depend on inputs only, and a change touches only the leaves it falls in and the merges above them."""

from __future__ import annotations

import random

from dbt_llm.functions import agg_tree
from dbt_llm.functions.agg_tree import MAX_FAN_IN, SEPARATOR, build_tree, leaf_text, leaves, merge_groups
from dbt_llm.functions.tasks import build_task

SPEC = "0" * 64


def texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = ["late", "broken", "refund", "great", "slow", "support", "price", "box", "color", "size"]
    return [f"{i}: " + " ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) for i in range(n)]


def test_leaves_hold_every_text_once_in_hash_order_within_max_chars() -> None:
    group = texts(300)
    cut = leaves(group, 200)
    flat = [t for leaf in cut for _, t in leaf]
    assert sorted(flat) == sorted(group)
    assert [h for leaf in cut for h, _ in leaf] == sorted(h for leaf in cut for h, _ in leaf)
    assert all(len(SEPARATOR.join(t for _, t in leaf)) <= 200 for leaf in cut)
    assert 300 * 40 // 200 < len(cut) < 300  # several texts a leaf, not one leaf


def test_a_text_longer_than_max_chars_is_a_leaf_alone() -> None:
    cut = leaves(["x" * 500, "short one", "another"], 100)
    assert [t for _, t in next(leaf for leaf in cut if any(len(t) == 500 for _, t in leaf))] == ["x" * 500]


def test_row_order_never_matters() -> None:
    group = texts(200)
    shuffled = group[:]
    random.Random(1).shuffle(shuffled)
    a, b = build_tree(SPEC, group, 150), build_tree(SPEC, shuffled, 150)
    assert a is not None and b is not None
    assert a.root == b.root and a.nodes == b.nodes


def test_one_leaf_is_the_root_and_costs_one_call() -> None:
    tree = build_tree(SPEC, ["only text"], 1000)
    assert tree is not None and tree.depth == 0
    assert [n.key for n in tree.needed(set())] == [tree.root]
    assert leaf_text(tree.nodes[tree.root]) == "only text"
    assert build_tree(SPEC, [], 1000) is None


def test_merges_have_two_to_max_fan_in_children_up_to_one_root() -> None:
    tree = build_tree(SPEC, texts(1500), 300)
    assert tree is not None and tree.depth >= 3
    merges = [n for n in tree.nodes.values() if not n.leaf]
    assert all(2 <= len(n.children) <= MAX_FAN_IN for n in merges)
    assert all(tree.nodes[c].level < n.level for n in merges for c in n.children)
    leaves_ = [n for n in tree.nodes.values() if n.leaf]
    # Every node is asked on a first build: leaves plus merges.
    assert len(tree.needed(set())) == len(leaves_) + len(merges) == len(tree.nodes)


def test_keys_depend_on_the_spec_and_the_texts() -> None:
    a, b = build_tree(SPEC, texts(50), 200), build_tree("1" * 64, texts(50), 200)
    assert a is not None and b is not None and not set(a.nodes) & set(b.nodes)


def changed(old: list[str], new: list[str], max_chars: int = 300) -> tuple[int, int, int]:
    """(nodes to ask after the change, nodes of a rebuild, depth)."""
    before, after = build_tree(SPEC, old, max_chars), build_tree(SPEC, new, max_chars)
    assert before is not None and after is not None
    return len(after.needed(before.nodes)), len(after.nodes), after.depth


def test_adding_texts_asks_only_the_leaves_they_fall_in_and_the_merges_above() -> None:
    group = texts(1500)
    asked, rebuild, depth = changed(group, [*group, *texts(3, seed=7)])
    # Each added text changes its leaf (a forced cut may shift one neighbour) and one node per level above.
    assert asked <= 3 * (2 + depth + 1)
    assert asked * 10 < rebuild


def test_removing_texts_asks_only_the_leaves_they_fell_in_and_the_merges_above() -> None:
    group = texts(1500)
    asked, rebuild, depth = changed(group, group[:700] + group[703:])
    assert 1 <= asked <= 3 * (2 + depth + 1)
    assert asked * 10 < rebuild


def test_merge_groups_are_content_defined_so_an_insertion_does_not_shift_the_rest() -> None:
    keys = [agg_tree.leaf_key(SPEC, [str(i)]) for i in range(400)]
    before = merge_groups(keys)
    after = merge_groups([*keys[:100], agg_tree.leaf_key(SPEC, ["new"]), *keys[100:]])
    assert len({tuple(g) for g in before} - {tuple(g) for g in after}) <= 2


def test_a_merge_is_asked_with_the_merge_prompt() -> None:
    args = {"function": "agg", "task": "What do customers complain about?", "where": "llm_agg(review)"}
    task = build_task(args, provider="openai", default_model="m", temperature=0.0)
    leaf, merge = task.messages("a\n---\nb"), agg_tree.merge_task(task).messages("p1\n---\np2")
    assert "partial answers for the same task" in merge[0]["content"]
    assert "partial answers" not in leaf[0]["content"]
    assert all(m[1]["content"].endswith("What do customers complain about?") for m in (leaf, merge))
    assert agg_tree.merge_task(task).spec_hash == task.spec_hash
