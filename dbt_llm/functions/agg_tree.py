"""llm_agg's tree of partial answers, with no dbt or DuckDB: a group's texts cut into leaves, the
leaves merged a few at a time, level by level, up to one root, each node keyed by its inputs.

Both cuts are content-defined (as in content-defined chunking): a boundary falls after an item whose
own hash meets a condition, within a minimum and a maximum size. An added, changed or removed text
changes the leaf it falls in (and at most its neighbour), and only the merges above: the boundaries
elsewhere stay where they were, so their keys, and their cached answers, too."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from .tasks import Task, sha256_hex

SEPARATOR = "\n---\n"  # between the texts of a leaf, and between the partial answers of a merge
MIN_FAN_IN = 2
MAX_FAN_IN = 8
FAN_IN_ODDS = 4  # after MIN_FAN_IN children, a merge ends after a child with probability 1/4: about 5 each
_DRAW = 16**8  # the last 8 hex digits of a hash, as a uniform draw


@dataclass(frozen=True)
class Node:
    key: str
    level: int  # 0: a leaf
    texts: tuple[str, ...] = ()  # a leaf's texts, in hash order
    children: tuple[str, ...] = ()  # a merge's child keys, in order

    @property
    def leaf(self) -> bool:
        return self.level == 0


@dataclass(frozen=True)
class Tree:
    root: str
    nodes: dict[str, Node]

    def needed(self, known: Iterable[str]) -> list[Node]:
        """The nodes to ask, children before parents, given the keys whose answers are known: the
        root unless known, and under each node to ask, its children not known (a known node's
        subtree is never asked)."""
        known = set(known)
        found: list[Node] = []
        todo = [] if self.root in known else [self.root]
        while todo:
            node = self.nodes[todo.pop()]
            found.append(node)
            todo.extend(c for c in node.children if c not in known)
        return sorted(found, key=lambda n: n.level)

    @property
    def depth(self) -> int:
        return self.nodes[self.root].level


def _draw(hash_hex: str) -> int:
    # The last digits: texts are sorted by their first ones, so those would not be independent of the order.
    return int(hash_hex[-8:], 16)


def leaves(texts: Iterable[str], max_chars: int) -> list[list[tuple[str, str]]]:
    """The texts as (hash, text), sorted by hash (row order never matters), cut into leaves whose
    text (joined by SEPARATOR) has at most max_chars characters, a longer text being a leaf alone.
    Past a quarter of max_chars, a leaf ends after a text with a probability of its length over a
    quarter of max_chars: about half of max_chars each, whatever the lengths of the texts."""
    quarter = max(1, max_chars // 4)
    found: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    size = 0
    for hash_hex, text in sorted((sha256_hex(t), t) for t in texts):
        grown = size + len(SEPARATOR) + len(text) if current else len(text)
        if current and grown > max_chars:
            found.append(current)
            current, grown = [], len(text)
        current.append((hash_hex, text))
        size = grown
        if size >= quarter and _draw(hash_hex) < len(text) * _DRAW // quarter:
            found.append(current)
            current, size = [], 0
    if current:
        found.append(current)
    return found


def merge_groups(keys: list[str]) -> list[list[str]]:
    """A level's keys, in order, cut into groups of MIN_FAN_IN to MAX_FAN_IN by the same kind of
    rule over the keys; only the last group may hold one key, which then goes up a level as it is."""
    groups: list[list[str]] = []
    current: list[str] = []
    for key in keys:
        current.append(key)
        if len(current) >= MAX_FAN_IN or (len(current) >= MIN_FAN_IN and _draw(key) % FAN_IN_ODDS == 0):
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return groups


def leaf_key(spec_hash: str, text_hashes: Iterable[str]) -> str:
    return sha256_hex(spec_hash + "leaf" + "".join(text_hashes))


def merge_key(spec_hash: str, child_keys: Iterable[str]) -> str:
    return sha256_hex(spec_hash + "merge" + "".join(child_keys))


def build_tree(spec_hash: str, texts: Iterable[str], max_chars: int) -> Tree | None:
    """The tree of a group's texts (NULL and blank texts left out by the caller); None without texts."""
    nodes: dict[str, Node] = {}
    level: list[str] = []
    for leaf in leaves(texts, max_chars):
        node = Node(leaf_key(spec_hash, (h for h, _ in leaf)), 0, texts=tuple(t for _, t in leaf))
        nodes[node.key] = node
        level.append(node.key)
    if not level:
        return None
    depth = 0
    while len(level) > 1:
        depth += 1
        above: list[str] = []
        for group in merge_groups(level):
            if len(group) == 1:
                above.append(group[0])  # a merge of one would only repeat it
                continue
            node = Node(merge_key(spec_hash, group), depth, children=tuple(group))
            nodes[node.key] = node
            above.append(node.key)
        level = above
    return Tree(level[0], nodes)


def leaf_text(node: Node) -> str:
    """What a leaf's request carries: its texts, each once in hash order."""
    return SEPARATOR.join(node.texts)


def merge_text(parts: Iterable[str]) -> str:
    """What a merge's request carries: its children's partial answers, in order."""
    return SEPARATOR.join(parts)


def merge_task(task: Task) -> Task:
    """The task a merge is asked with: the call's, its prompt the merge's (see specs.Agg). The
    node keys carry the call's spec_hash, so the merge's spec_hash is left as it is."""
    return dataclasses.replace(task, spec={**task.spec, "step": "merge"})
