"""Which llm_* call of a model's code fills a column (calls/columns.py), the seam llm_up_to_date stands on."""

from __future__ import annotations

import pytest

from dbt_llm.calls.columns import CodeCall, call_of_column, code_calls, direct_columns
from dbt_llm.errors import SpecError

CODE = """{{ config(materialized='incremental') }}
{% set labels = ['a', 'b'] %}
{# {{ dbt_llm.llm_classify('old', labels) }} as gone #}
select id, body, {{ dbt_llm.llm_classify('body', labels) }} as category, -- a comment, with a comma
  coalesce({{ dbt_llm.llm_classify("title || body", ['x', 'y']) }}, 'none') kind,
  {{ dbt_llm.llm_extract('body', {'city': {'type': 'string'}}) }}.city as town,
  cast({{ dbt_llm.llm_complete('body') }} as varchar) as summary,
  {{ dbt_llm.llm_embed('body') }}::float[] vec,
  {{ dbt_llm.llm_classify('body', ['p', 'q']) }}, (select 1) as one
from {{ ref('t') }} where {{ dbt_llm.llm_filter('body', 'is it?') }}
"""


def test_each_call_is_found_in_code_order_with_the_column_it_fills() -> None:
    assert code_calls(CODE) == [
        CodeCall("classify", "body", "category", direct=True),
        CodeCall("classify", "title || body", "kind"),
        CodeCall("extract", "body", "town"),
        CodeCall("complete", "body", "summary"),
        CodeCall("embed", "body", "vec"),
        CodeCall("classify", "body", None),  # unnamed: the comma ends it
        CodeCall("filter", "body", None),  # in the where clause
    ]


def test_a_column_names_its_call_among_equal_functions_and_texts_by_order() -> None:
    code = "select {{ dbt_llm.llm_classify('body', l1) }} as a, {{ dbt_llm.llm_classify('body', l2) }} as b from t"
    calls = [{"function": "classify", "text": "body", "n": 1}, {"function": "classify", "text": "body", "n": 2}]
    assert call_of_column(code, "a", calls, "w")["n"] == 1
    assert call_of_column(code, "B", calls, "w")["n"] == 2
    with pytest.raises(SpecError, match="cannot tell which llm_\\* call fills column `c`"):
        call_of_column(code, "c", calls, "w")
    assert direct_columns(code, calls) == ({"a": calls[0], "b": calls[1]}, [])
    assert direct_columns(CODE, [{"function": "classify", "text": "body"}])[1] == ["kind", "town", "summary", "vec"]
    # One call in the model: it is the column's, whatever the code looks like (a wrapper macro).
    assert call_of_column("select {{ my_wrapper() }} as c", "c", calls[:1], "w")["n"] == 1
