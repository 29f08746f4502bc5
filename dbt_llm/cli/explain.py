"""`dbt-llm explain --select <model> [--text '...']`: the messages, response schema and cache key of the
request a row sends, with no call. dbt parses the project and the plugin of your profile plans the
model's calls as a run would (`dbt run-operation dbt_llm._llm_explain`), so key and body are the real ones."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

_PREFIX = "dbt_llm_explain "  # the macro's debug log line that carries the plugin's answer


def add_parser(sub: Any) -> None:
    cmd = sub.add_parser(
        "explain", help="the messages, schema and cache key of the request a row of a model sends (no call)"
    )
    cmd.add_argument("--select", "-s", required=True, metavar="MODEL", help="a model's name (or unique_id)")
    cmd.add_argument(
        "--text",
        default=None,
        help="a row's text (default: a row of the model's last build when the text is one of its columns, "
        "else a placeholder and no key)",
    )
    cmd.add_argument("--format", choices=("text", "json"), default="text", help="text (default) or json")
    cmd.add_argument("--project-dir", default=None, help="the dbt project (default: the current directory)")
    cmd.add_argument("--profiles-dir", default=None, help="where profiles.yml is (default: as dbt finds it)")
    cmd.add_argument("--target", "-t", default=None, help="the profile's target (default: its default)")
    cmd.add_argument("--vars", default=None, help="dbt vars, as for dbt (YAML)")


def explain(args: argparse.Namespace) -> dict[str, Any]:
    """The plugin's answer for the model; a failure raises ExplainError with dbt's message."""
    from dbt.cli.main import dbtRunner  # here: importing dbt takes a second the other commands need not wait

    caught: list[str] = []
    errors: list[str] = []

    def keep(event: Any) -> None:
        msg = str(getattr(event.data, "msg", "") or "")
        if msg.startswith(_PREFIX):
            caught.append(msg[len(_PREFIX) :])
        elif event.info.level == "error" and event.info.msg:
            errors.append(str(event.info.msg))

    argv = ["run-operation", "dbt_llm._llm_explain", "--args", json.dumps({"model": args.select, "text": args.text})]
    argv += ["--log-level", "none", "--no-send-anonymous-usage-stats"]
    for flag in ("project_dir", "profiles_dir", "target", "vars"):
        value = getattr(args, flag)
        if value is not None:
            argv += ["--" + flag.replace("_", "-"), value]
    result = dbtRunner(callbacks=[keep]).invoke(argv)
    if not caught:
        said = "\n".join(errors) or (str(result.exception) if result.exception else "no answer from the plugin")
        raise ExplainError(f"dbt-llm explain: dbt run-operation failed:\n{said}")
    answer: dict[str, Any] = json.loads(caught[-1])
    if "error" in answer:
        raise ExplainError(str(answer["error"]))
    return answer


class ExplainError(Exception):
    pass


def run(args: argparse.Namespace) -> int:
    try:
        answer = explain(args)
    except ExplainError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps(answer, indent=2, ensure_ascii=False))
    else:
        print("\n\n".join(shown(call) for call in answer["calls"]))
    return 0


def shown(call: dict[str, Any]) -> str:
    """One call's request for a reader: what is asked, of which model, under which key."""
    per_request = call["rows_per_request"]
    lines = [f"== {call['call']}", f"model: {call['model']}   mode: {call['mode']}   rows_per_request: {per_request}"]
    if "note" in call:
        return "\n".join([*lines, call["note"]])
    said = f"  (from {call['text_from']})" if "text_from" in call else ""
    said = "  (a placeholder: no row's text, so no key)" if call["key"] is None else said
    lines.append(f"text: {call['text']!r}{said}")
    if call["key"] is not None:
        lines.append(f"cache key: {call['key']}  (sha256 of spec_hash {call['spec_hash']} || text)")
    lines += _body(call["route"], call["body"])
    if per_request > 1:
        lines.append(f"(rows_per_request {per_request}: the row may share a request, each text under its id)")
    escalated = call.get("escalated")
    if escalated:
        below, model = escalated["below"], escalated["model"]
        lines.append(f"-- escalated (confidence below {below}) to {model}, key {escalated['key']}")
        lines += _body(escalated["route"], escalated["body"])
    return "\n".join(lines)


def _body(route: str, body: dict[str, Any]) -> list[str]:
    lines = [f"POST <base_url>{route}"]
    if "input" in body:
        return [*lines, json.dumps(body, indent=2, ensure_ascii=False)]
    for message in body["messages"]:
        lines += [f"-- {message['role']}:", str(message["content"])]
    schema = body.get("response_format")
    if schema is not None:
        lines += ["-- response schema:", json.dumps(schema["json_schema"]["schema"], indent=2, ensure_ascii=False)]
    rest = {k: v for k, v in body.items() if k not in ("messages", "response_format")}
    lines.append("-- and: " + json.dumps(rest))
    return lines
