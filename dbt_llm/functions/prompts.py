"""Prompt templates. Changing a template's text must bump its version: the version is
part of every cache key, so old answers are not reused for a new prompt."""

from __future__ import annotations

import json
from typing import Any

# extract/2: answers are grounded (grounding.py), so extract/1 answers are not reused.
# extract/3: rules on absent fields and verbatim values, a worked all-null turn, humanised field names
# (README "Answer quality").
# extract/4: the text on a `Text: ...` line, not in <input> tags (examples too): small models copied the
# tagged request into fields.
# extract/5: the one-line question ("Extract the fields ... Use null when absent.") before the text, and
# nothing else of ours: extract/4 lost to that one line where most fields are present (README "Answer
# quality").
TEMPLATE_VERSIONS = {
    "classify": "classify/1",
    "classify_multi": "classify_multi/1",
    "extract": "extract/5",
    "filter": "filter/1",
    "complete": "complete/1",
    "embed": "embed/1",  # no prompt: the text is the input
    "agg": "agg/1",
}

Message = dict[str, str]


def _examples(examples: list[dict[str, Any]]) -> str:
    lines = ["Examples:"]
    for ex in examples:
        lines.append(f"<input>\n{ex['input']}\n</input>\nAnswer: {json.dumps(ex['output'], ensure_ascii=False)}")
    return "\n\n".join(lines)


def _classify_system(
    labels: dict[str, str | None], instructions: str | None, examples: list[dict[str, Any]], multi_label: bool = False
) -> str:
    # The fixed part (labels, instructions, examples) comes first so providers' prefix caches apply;
    # the question comes after the text, which small models follow better.
    label_lines = "\n".join(f"- {name}: {desc}" if desc else f"- {name}" for name, desc in labels.items())
    if multi_label:
        lead = "You tag a text with every one of these labels that applies to it: several, one, or none."
    else:
        lead = "You classify a text into exactly one of these labels."
    system = f"{lead}\nLabels:\n{label_lines}"
    if instructions:
        system += f"\n\nInstructions: {instructions}"
    if examples:
        system += "\n\n" + _examples(examples)
    return system


CLASSIFY_QUESTION = "Which one label fits the text above best? Answer with the label only."
MULTI_LABEL_QUESTION = "Which labels apply to the text above? List every one that applies; none if none does."


def classify_messages(
    text: str,
    labels: dict[str, str | None],
    instructions: str | None,
    examples: list[dict[str, Any]],
    multi_label: bool = False,
) -> list[Message]:
    system = _classify_system(labels, instructions, examples, multi_label)
    question = MULTI_LABEL_QUESTION if multi_label else CLASSIFY_QUESTION
    user = f"<input>\n{text}\n</input>\n\n{question}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _extract_examples(examples: list[dict[str, Any]]) -> str:
    lines = ["Examples:"]
    for ex in examples:
        lines.append(f"Text: {ex['input']}\nAnswer: {json.dumps(ex['output'], ensure_ascii=False)}")
    return "\n\n".join(lines)


def _extract_system(instructions: str | None, examples: list[dict[str, Any]]) -> str | None:
    """What the user gave beyond the fields, if anything: no rules of ours (see extract_messages)."""
    parts = [f"Instructions: {instructions}"] if instructions else []
    if examples:
        parts.append(_extract_examples(examples))
    return "\n\n".join(parts) or None


# The user message of an extraction: the question on one line, then the text on a `Text:` line, to the
# end (tests/openai_server.py reads it so). With the text in <input> tags, qwen2.5-0.5b copied the
# request into fields (music_item right 0.00 -> 0.35 on SNIPS slots).
TEXT_PREFIX = "Text: "


def _extract_question(text: str, field_names: list[str]) -> str:
    return f"Extract the fields {', '.join(field_names)} from the text. Use null when absent.\n{TEXT_PREFIX}{text}"


def extract_messages(
    text: str, field_names: list[str], instructions: str | None, examples: list[dict[str, Any]]
) -> list[Message]:
    # The one-line question and the text, nothing of ours around them: every rule or worked turn
    # measured (README "Answer quality") won where most fields are absent and lost where most are
    # stated. The user's instructions and examples, if any, come first for providers' prefix caches.
    system = _extract_system(instructions, examples)
    return [
        *([{"role": "system", "content": system}] if system else []),
        {"role": "user", "content": _extract_question(text, field_names)},
    ]


# Packed requests (packing.py): several texts, each under an id, one answer per id. The system
# message is the unpacked one, so a pack and a single row share the provider's prefix cache; the note
# on packing leads the user message.
PACKED_NOTE = (
    "You get several inputs, each in an <input id=...> tag. Treat each input on its own, as if it were "
    "the only one: the others never change its answer. Answer every id."
)


def _packed_inputs(texts: dict[str, str]) -> str:
    inputs = "\n\n".join(f'<input id="{row_id}">\n{text}\n</input>' for row_id, text in texts.items())
    return f"{PACKED_NOTE}\n\n{inputs}"


def classify_packed_messages(
    texts: dict[str, str],
    labels: dict[str, str | None],
    instructions: str | None,
    examples: list[dict[str, Any]],
    multi_label: bool = False,
) -> list[Message]:
    system = _classify_system(labels, instructions, examples, multi_label)
    question = "which labels apply to it (none if none does)" if multi_label else "which one label fits it best"
    user = (
        f"{_packed_inputs(texts)}\n\nFor each input above, {question}? "
        "Answer with an object mapping each id to its answer."
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def extract_packed_messages(
    texts: dict[str, str], field_names: list[str], instructions: str | None, examples: list[dict[str, Any]]
) -> list[Message]:
    system = _extract_system(instructions, examples)
    user = (
        f"{_packed_inputs(texts)}\n\nFor each input above, extract the fields {', '.join(field_names)} from it. "
        "Use null when absent. Answer with an object mapping each id to its answer."
    )
    return [*([{"role": "system", "content": system}] if system else []), {"role": "user", "content": user}]


def _filter_system(question: str, instructions: str | None, examples: list[dict[str, Any]]) -> str:
    system = (
        "You answer a yes/no question about a text: true when the text says so, false otherwise "
        f"(also when the text does not tell).\nQuestion: {question}"
    )
    if instructions:
        system += f"\n\nInstructions: {instructions}"
    if examples:
        system += "\n\n" + _examples(examples)
    return system


def filter_messages(
    text: str, question: str, instructions: str | None, examples: list[dict[str, Any]]
) -> list[Message]:
    system = _filter_system(question, instructions, examples)
    user = f"<input>\n{text}\n</input>\n\n{question} Answer true or false."
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def filter_packed_messages(
    texts: dict[str, str], question: str, instructions: str | None, examples: list[dict[str, Any]]
) -> list[Message]:
    system = _filter_system(question, instructions, examples)
    user = (
        f"{_packed_inputs(texts)}\n\nFor each input above: {question} Answer true or false, "
        "with an object mapping each id to its answer."
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


COMPLETE_SYSTEM = "Answer the request directly, without a preamble and without repeating the request."


def complete_messages(prompt: str, instructions: str | None) -> list[Message]:
    """llm_complete: the prompt is the user's own text, sent as it is."""
    return [{"role": "system", "content": instructions or COMPLETE_SYSTEM}, {"role": "user", "content": prompt}]


AGG_LEAF_SYSTEM = (
    "You answer a task over a group of texts, the rows of a table, given between <input> tags and separated "
    "by lines of ---. Answer the task for these texts as a whole, directly, without a preamble."
)
AGG_MERGE_SYSTEM = (
    "You combine partial answers for the same task. A group of texts was too large for one request, so it was "
    "split into parts and the task answered over each part on its own; the partial answers are given between "
    "<input> tags and separated by lines of ---. Give the one answer the task would get over the whole group: "
    "merge what the parts share, keep what only one says, in the form the task asks for, without a preamble."
)


def agg_messages(text: str, task: str, instructions: str | None, *, merge: bool) -> list[Message]:
    """llm_agg: a leaf's texts, or a merge's partial answers, with the task after them."""
    system = f"{AGG_MERGE_SYSTEM if merge else AGG_LEAF_SYSTEM}\nTask: {task}"
    if instructions:
        system += f"\n\nInstructions: {instructions}"
    user = f"<input>\n{text}\n</input>\n\n{task}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]
