"""The confidence of an answer from its tokens' logprobs (dbt_llm/functions/confidence.py): the chosen
answer's probability renormalised over the answers the schema allows."""

from __future__ import annotations

import json
import math

import pytest

from dbt_llm.functions.confidence import Choices, Token, confidence
from dbt_llm.functions.tasks import Task, build_task


def tok(text: str, p: float, *alts: tuple[str, float]) -> Token:
    """A token chosen with probability p, and the alternatives shown (the chosen one among them)."""
    top = [(text.encode(), math.log(p))] + [(a.encode(), math.log(q)) for a, q in alts]
    return text.encode(), math.log(p), top


def sure(text: str) -> Token:
    return tok(text, 1.0)


def test_forbidden_mass_is_left_out_of_a_boolean() -> None:
    # "maybe" is no JSON boolean: the grammar masked it, so it counts for neither answer.
    tokens = [sure('{"'), sure("answer"), sure('":'), tok("true", 0.6, ("false", 0.2), ("maybe", 0.2)), sure("}")]
    assert confidence('{"answer":true}', True, tokens, Choices.booleans("answer")) == pytest.approx(0.75)


def test_a_space_before_the_value_leads_to_the_same_answer() -> None:
    tokens = [sure('{"answer":'), tok("true", 0.6, ("false", 0.2), (" true", 0.05), ("Yes", 0.15)), sure("}")]
    got = confidence('{"answer":true}', True, tokens, Choices.booleans("answer"))
    assert got == pytest.approx(0.65 / 0.85)


def test_a_label_over_several_tokens_multiplies_where_labels_diverge() -> None:
    # OpenAI-style tokens: the opening quote comes with the colon; "hard" still allows two labels.
    choices = Choices.labels("label", ["hardware", "hardcover", "software"])
    tokens = [
        sure('{"'),
        sure("label"),
        tok('":"', 0.9, ('": "', 0.1)),  # either layout allows every label: decides nothing
        tok("hard", 0.5, ("soft", 0.3), ("{", 0.2)),
        tok("ware", 0.6, ("cover", 0.3), ("wood", 0.1)),  # "hardwood" is no label
        tok('"}', 0.5, ('",', 0.5)),  # after "hardware" nothing changes the answer
    ]
    got = confidence('{"label":"hardware"}', "hardware", tokens, choices)
    assert got == pytest.approx((0.5 / 0.8) * (0.6 / 0.9))


def test_a_label_that_is_the_start_of_another_is_decided_by_its_closing_quote() -> None:
    choices = Choices.labels("label", ["soft", "software"])
    tokens = [sure('{"label": "'), tok("soft", 0.7, ("software", 0.3)), tok('"}', 0.8, ("ware", 0.2))]
    assert confidence('{"label": "soft"}', "soft", tokens, choices) == pytest.approx(0.7 * 0.8)


def test_tokens_around_the_content_are_skipped() -> None:
    # llama.cpp's grammar may let the model fence the JSON; the server strips the fence from the content.
    tokens = [sure("```"), sure("json"), sure("\n"), sure('{"answer":'), tok("false", 0.3, ("true", 0.1)), sure("}")]
    tokens.append(sure("\n```"))
    assert confidence('{"answer":false}', False, tokens, Choices.booleans("answer")) == pytest.approx(0.75)


def test_the_chosen_token_outside_the_top_list_still_counts() -> None:
    # The model's own favourites were all junk the grammar forbade: the grammar's pick is then certain.
    tokens = [sure('{"label":"'), (b"b", math.log(0.01), [(b"j", math.log(0.5)), (b"D", math.log(0.2))]), sure('"}')]
    assert confidence('{"label":"b"}', "b", tokens, Choices.labels("label", ["a", "b"])) == pytest.approx(1.0)


def test_each_packed_row_reads_its_own_value() -> None:
    content = '{"r1": {"label": "a"}, "r2": {"label": "b"}}'
    tokens = [
        sure('{"r1": {"label": "'),
        tok("a", 0.9, ("b", 0.1)),
        sure('"}, "r2": {"label": "'),
        tok("b", 0.4, ("a", 0.6)),
        sure('"}}'),
    ]
    choices = Choices.labels("label", ["a", "b"])
    assert confidence(content, "a", tokens, choices, "r1") == pytest.approx(0.9)
    assert confidence(content, "b", tokens, choices, "r2") == pytest.approx(0.4)


def test_unknown_without_tokens_or_when_they_do_not_spell_the_answer() -> None:
    choices = Choices.booleans("answer")
    assert confidence('{"answer":true}', True, None, choices) is None
    assert confidence('{"answer":true}', True, [sure('{"answer":false}')], choices) is None
    # An escape the model chose to spell the label with is not read as the label.
    labels = Choices.labels("label", ["é", "e"])
    assert confidence('{"label":"\\u00e9"}', "é", [sure('{"label":"\\u00e9"}')], labels) is None


def test_tasks_ask_for_logprobs_only_where_an_answer_has_a_confidence() -> None:
    def task(logprobs: bool = True, **args: object) -> Task:
        return build_task(args, provider="openai", default_model="m", temperature=0.0, logprobs=logprobs)

    assert task(function="classify", labels=["a", "b"]).top_logprobs == 20
    assert task(function="filter", question="q?").top_logprobs == 20
    assert task(function="classify", labels=["a", "b"], multi_label=True).top_logprobs is None
    assert task(function="extract", fields={"city": "string"}).top_logprobs is None
    off = task(False, function="filter", question="q?")
    assert off.top_logprobs is None
    # Asking for logprobs changes no answer: the cache key is the same either way.
    assert off.spec_hash == task(function="filter", question="q?").spec_hash
    tokens = [sure('{"answer":'), tok("true", 0.5, ("false", 0.5)), sure("}")]
    result = json.dumps({"answer": True})
    assert task(function="filter", question="q?").confidence('{"answer":true}', result, tokens) == 0.5
