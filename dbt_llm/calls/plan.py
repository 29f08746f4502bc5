"""A macro call's arguments, as the model rendered them, turned into a Call: the task, and the
settings that apply to it (the dbt var, the model's meta, the profile, in that order)."""

from __future__ import annotations

from typing import Any

from ..config import LlmConfig
from ..engine.packing import EMBED_ROWS_PER_REQUEST, MAX_ROWS_PER_REQUEST
from ..errors import SpecError
from ..functions.specs import FUNCTIONS
from ..functions.tasks import Task, build_task, sha256_hex
from ..local.registry import LocalModelError, check_name
from ..pricing import PriceTable
from .attribution import attribution_of
from .call import Call
from .cascade import Cascade, plan_cascade
from .settings import call_mode, parse_model_settings


def plan_call(args: dict[str, Any], invocation_id: str, config: LlmConfig, prices: PriceTable) -> Call:
    """Bad arguments or settings raise SpecError, which fails the model when it compiles."""
    where = str(args.get("where") or "llm_" + str(args.get("function")))
    settings = parse_model_settings(args.get("model_settings"), where)
    kind = FUNCTIONS.get(str(args.get("function")))  # None: build_task names the known functions
    embeds = kind is not None and kind.embeds
    default_model = config.embedding_model if embeds else settings.model or config.model
    _check_served(embeds, str(args.get("model") or default_model), config, where)
    _check_claude(args, embeds, config, where)
    task = build_task(
        args,
        provider=config.provider,
        default_model=default_model,
        temperature=config.temperature,
        logprobs=config.logprobs and config.provider != "anthropic",  # Claude gives no logprobs
    )
    # Whether dbt runs the model's post-hook for this command: the macro _llm_hooked_commands decides.
    hooked = args.get("hooked") is True
    # Embeddings are cheap and fast: they are always sent at once, never as batch jobs. llm_agg's tree
    # is asked level by level, each level waiting for the one below: a batch job per level would take days.
    mode = (
        "realtime"
        if task.embeds or task.kind.across_rows
        else call_mode(
            args.get("mode") or settings.mode or config.mode, hooked=hooked, provider=config.provider, where=where
        )
    )
    _check_priced(config.max_cost_usd is not None or settings.max_cost_usd is not None, task, prices, where)
    node_id, batch_id = str(args.get("node_id")), str(args.get("batch_id") or "")
    dry = bool(args.get("dry_run"))
    recheck = _recheck(args.get("recheck"), settings.recheck, config.recheck, where)
    compare = _compare(args.get("compare"), dry, where)
    with_confidence = _with_confidence(args.get("with_confidence"), task, where)
    cascade = _cascade(args, task, config, where)
    # with_confidence is no part of the key, but the call's SQL reads another form: a call of its own.
    shown = "\nconfidence" if with_confidence else ""
    if cascade is not None:  # another SQL too
        shown += "\n" + cascade.shown
    return Call(
        sha256_hex(f"{invocation_id}\n{node_id}\n{batch_id}\n{task.spec_hash}{shown}")[:32],
        task,
        invocation_id,
        node_id,
        batch_id=batch_id,
        command=str(args.get("command") or "run"),
        hooked=hooked,
        on_error=settings.on_error or config.on_error,
        dry_run=dry,
        max_cost_usd=settings.max_cost_usd,
        mode=mode,
        rows_per_request=_rows_per_call(args, task, config, where),
        recheck=recheck if hooked and not dry and cascade is None else 0,
        compare=compare if hooked else 0,
        text_sql=str(args.get("text") or ""),
        with_confidence=with_confidence,
        golden=str(args.get("golden") or ""),
        cascade=cascade,
        attribution=attribution_of(args.get("attribution")),
    )


def _cascade(args: dict[str, Any], task: Task, config: LlmConfig, where: str) -> Cascade | None:
    cascade = plan_cascade(
        args,
        task,
        provider=config.provider,
        temperature=config.temperature,
        logprobs=config.logprobs,
        target=config.cascade_target,
    )
    if cascade is not None:
        _check_served(False, cascade.large.model, config, where)
    if cascade is not None and args.get("compare"):
        raise SpecError(
            f"{where}: dbt_llm_compare does not preview a cascade (escalate_to=) yet; run the dry run without "
            "dbt_llm_compare."
        )
    return cascade


def _check_served(embeds: bool, model: str, config: LlmConfig, where: str) -> None:
    """The embedded provider serves registry models and .gguf files: embeddings from an embedding
    model, everything else from a chat model."""
    if config.provider != "local":
        return
    try:
        check_name(model, "embedding" if embeds else "chat")
    except LocalModelError as exc:
        raise SpecError(f"{where}: provider local: {exc}") from None


def _check_claude(args: dict[str, Any], embeds: bool, config: LlmConfig, where: str) -> None:
    """What Anthropic's API cannot serve fails the model when it compiles, not after rows were paid."""
    if config.provider != "anthropic":
        return
    function = f"llm_{args.get('function')}"
    if embeds:
        raise SpecError(
            f"{where}: {function} needs embeddings, and Anthropic serves none (provider: anthropic). Compute "
            "them with a second profile or target on an OpenAI-compatible endpoint (provider: openai), or remove "
            f"{function}."
        )
    if args.get("with_confidence") is True:
        raise SpecError(
            f"{where}: {function} with with_confidence=true needs token logprobs, and Claude gives none "
            "(provider: anthropic). Remove with_confidence, or use an endpoint that returns logprobs."
        )
    if args.get("escalate_to"):
        raise SpecError(
            f"{where}: {function} with escalate_to= escalates on the confidence, which comes from token logprobs, "
            "and Claude gives none (provider: anthropic). Remove escalate_to, or use an endpoint that returns "
            "logprobs."
        )


def _check_priced(capped: bool, task: Task, prices: PriceTable, where: str) -> None:
    if capped and prices.price(task.model) is None:
        raise SpecError(
            f"{where}: no price is known for model {task.model!r}, so `max_cost_usd` cannot be enforced. "
            f"Add it to the plugin config: prices: {{{task.model}: {{input: <USD per 1M>, output: "
            "<USD per 1M>}}, or remove max_cost_usd."
        )


def truncate_at(config: LlmConfig) -> int | None:
    """Where texts are cut, in SQL, so the key stays equal to what is sent."""
    return config.max_input_chars if config.on_long_input == "truncate" else None


def _recheck(var: Any, meta: int | None, profile: int, where: str) -> int:
    """The dbt var dbt_llm_recheck, else the model's meta, else the profile. A preview or a dry run
    rechecks nothing."""
    if var is None:
        return profile if meta is None else meta
    if isinstance(var, bool) or not isinstance(var, int) or var < 0:
        raise SpecError(
            f"{where}: dbt_llm_recheck is {var!r}; give the number of cached rows of each call to ask again, "
            "for example --vars '{dbt_llm_recheck: 20}' (0: none)."
        )
    return int(var)


def _compare(var: Any, dry: bool, where: str) -> int:
    """The dbt var dbt_llm_compare: rows of each call a dry run asks the new spec, to compare."""
    if var is None or var == 0:
        return 0
    if isinstance(var, bool) or not isinstance(var, int) or var < 0:
        raise SpecError(
            f"{where}: dbt_llm_compare is {var!r}; give the number of the model's rows to ask the new spec, "
            "for example --vars '{dbt_llm_dry_run: true, dbt_llm_compare: 50}'."
        )
    if not dry:
        raise SpecError(
            f"{where}: dbt_llm_compare previews a change before it is paid, so it runs with a dry run: "
            "--vars '{dbt_llm_dry_run: true, dbt_llm_compare: 50}'."
        )
    return int(var)


def _with_confidence(value: Any, task: Task, where: str) -> bool:
    if value is None or value is False:
        return False
    if value is not True:
        raise SpecError(f"{where}: `with_confidence` must be true or false; got {value!r}.")
    if task.choices is None:
        multi = " with multi_label=true" if task.multi_label else ""
        raise SpecError(
            f"{where}: with_confidence=true is not available for llm_{task.function}{multi}: it gives the "
            "probability of an answer among a fixed set, so it works for llm_classify (one label per row) "
            "and llm_filter. Remove with_confidence."
        )
    return True


def _rows_per_call(args: dict[str, Any], task: Task, config: LlmConfig, where: str) -> int:
    if task.embeds:
        return EMBED_ROWS_PER_REQUEST
    if not task.packable:
        return 1
    return _rows_per_request(args.get("rows_per_request"), config.rows_per_request, where)


def _rows_per_request(value: Any, default: int, where: str) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ROWS_PER_REQUEST:
        raise SpecError(
            f"{where}: `rows_per_request` must be a whole number from 1 to {MAX_ROWS_PER_REQUEST}; got {value!r}. "
            "1 (the default) sends each text alone; measure larger values on your model with "
            "benchmarks/quality.py --rows-per-request."
        )
    return int(value)
