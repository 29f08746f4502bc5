"""What the tests that judge a column, and dbt_llm_refresh, ask the plugin at compile time: the spec the
call that fills a column has in the model's code now, and the columns that are a call's value itself.
Nothing is registered or sent."""

from __future__ import annotations

import json
from collections.abc import Callable

from ..calls.columns import call_of_column, direct_columns
from ..calls.explain import explain_call
from ..calls.plan import plan_call, truncate_at
from ..config import LlmConfig
from ..errors import SpecError
from ..pricing import PriceTable


class ColumnSpecs:
    def __init__(self, config: LlmConfig, prices: PriceTable, schema: Callable[[], str | None]) -> None:
        self._config = config
        self._prices = prices
        self._schema = schema

    # -- dbt_llm_current_spec(args_json): a test that judges a column, at compile time --
    def current_spec(self, args_json: str) -> str:
        """The spec the call that fills a column has in the model's code now (as dbt parsed it), planned
        as the model would plan it, and nothing registered or sent: what llm_up_to_date recomputes keys with."""
        args = json.loads(args_json)
        node_id, column = str(args.get("node_id")), str(args.get("column"))
        where = f"llm_up_to_date on {node_id}"
        try:
            found = call_of_column(str(args.get("raw_code") or ""), column, list(args.get("calls") or []), where)
            planned = {**(found.get("args") or {}), "function": found.get("function"), "node_id": node_id}
            planned.update(where=f"{where} ({column})", model_settings=args.get("model_settings"))
            call = plan_call(planned, "current", self._config, self._prices)
        except SpecError as exc:
            return json.dumps({"error": str(exc)})
        schema = self._schema()
        return json.dumps(
            {
                "spec_hash": call.task.spec_hash,
                "text": found.get("text"),
                "function": call.task.function,
                "args": found.get("args") or {},
                "truncate_at": truncate_at(self._config),
                "cache_table": f"{schema}.llm_cache",
            }
        )

    # -- dbt_llm_explain(args_json): `dbt-llm explain`, through dbt run-operation --
    def explain(self, args_json: str) -> str:
        """The request a row's text makes for each call of a model, as dbt parsed the model's code and
        planned as the model would plan it: nothing is registered or sent."""
        args = json.loads(args_json)
        node_id, text = str(args.get("node_id")), args.get("text")
        # Without --text: a row of the model's last build, where the call's text is one of its columns.
        row_texts: dict[str, str] = args.get("row_texts") or {}
        explained = []
        try:
            for found in list(args.get("calls") or []):
                where = f"llm_{found.get('function')}({found.get('text')}) in {node_id}"
                planned = {**(found.get("args") or {}), "function": found.get("function"), "node_id": node_id}
                planned.update(where=where, model_settings=args.get("model_settings"))
                call = plan_call(planned, "explain", self._config, self._prices)
                row_text = row_texts.get(str(found.get("text"))) if text is None else None
                shown = explain_call(call, text if row_text is None else row_text, truncate_at(self._config))
                if row_text is not None:
                    shown["text_from"] = f"a row of {args.get('row_from')}, the model's last build"
                explained.append({"text_sql": found.get("text"), **shown})
        except SpecError as exc:
            return json.dumps({"error": str(exc)})
        return json.dumps({"calls": explained})

    # -- dbt_llm_refresh_columns(args_json): the post-hook of a run with dbt_llm_refresh --
    def refresh_columns(self, args_json: str) -> str:
        """The columns of the model that are a call's value itself, which dbt_llm_refresh re-asks in place."""
        args = json.loads(args_json)
        try:
            columns, others = direct_columns(str(args.get("raw_code") or ""), list(args.get("calls") or []))
        except SpecError as exc:
            return json.dumps({"error": str(exc)})
        return json.dumps({"columns": sorted(columns), "others": others})
