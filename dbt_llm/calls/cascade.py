"""A cascade (`escalate_to=`, `escalate_below=` on llm_classify and llm_filter): every row is asked of the
call's model; the rows whose confidence is below the threshold (or unknown) are asked of `escalate_to`,
whose answer is final. Each model's task is the one a plain call with that model makes, so both share
the plain calls' cache entries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import SpecError
from ..functions.tasks import Task, build_task

AUTO = "auto"


@dataclass(frozen=True)
class Cascade:
    """The model asked when the first is not sure, and below which confidence it is asked."""

    large: Task
    threshold: float


def plan_cascade(
    args: dict[str, Any], task: Task, *, provider: str, temperature: float, logprobs: bool
) -> Cascade | None:
    """The cascade of a macro call, None without `escalate_to`; bad arguments raise SpecError."""
    where = str(args.get("where") or f"llm_{task.function}")
    escalate_to, below = args.get("escalate_to"), args.get("escalate_below")
    if escalate_to is None:
        if below is not None or args.get("cascade_target") is not None:
            raise SpecError(
                f"{where}: `escalate_below` and `cascade_target` say when to ask a larger model, so they need "
                "`escalate_to`: add escalate_to='<larger model>', or remove them."
            )
        return None
    if not isinstance(escalate_to, str) or not escalate_to.strip():
        raise SpecError(f"{where}: `escalate_to` must be a model name; got {escalate_to!r}.")
    if task.choices is None:
        multi = " with multi_label=true" if task.multi_label else ""
        raise SpecError(
            f"{where}: escalate_to is not available for llm_{task.function}{multi}: a cascade escalates the rows "
            "whose confidence is low, and a confidence exists for llm_classify (one label per row) and "
            "llm_filter only. Remove escalate_to, or ask the larger model with model=."
        )
    if escalate_to == task.model:
        raise SpecError(
            f"{where}: escalate_to={escalate_to!r} is the call's own model, so a cascade would ask it twice. "
            "Give a larger model, e.g. model='gpt-4o-mini', escalate_to='gpt-4o'."
        )
    if not logprobs:
        raise SpecError(
            f"{where}: a cascade escalates on the confidence, which comes from logprobs, and the plugin config "
            "has `logprobs: false`. Set logprobs: true, or remove escalate_to."
        )
    threshold = _threshold(below, bool(args.get("golden")), where)
    large = build_task(
        {**args, "model": escalate_to},
        provider=provider,
        default_model=escalate_to,
        temperature=temperature,
        logprobs=logprobs,
    )
    if args.get("cascade_target") is not None:
        raise SpecError(
            f"{where}: `cascade_target` is the golden agreement escalate_below='auto' aims for, and 'auto' is not "
            "available yet; remove cascade_target and give escalate_below a number, e.g. 0.8."
        )
    return Cascade(large, threshold)


def _threshold(value: Any, golden: bool, where: str) -> float:
    if value == AUTO:
        # Not yet: the threshold must be chosen from the golden set before the model's rows are answered.
        missing = "" if golden else " (and it would need golden=ref('<golden set>'))"
        raise SpecError(
            f"{where}: escalate_below='auto' (a threshold chosen from the golden set) is not available yet{missing}; "
            "give a number in (0, 1], e.g. escalate_below=0.8, and measure it with golden= (llm_accuracy)."
        )
    if value is None:
        raise SpecError(
            f"{where}: escalate_to needs `escalate_below`, the confidence under which a row is asked of it: "
            "a number in (0, 1], e.g. escalate_below=0.8, or 'auto' with golden=."
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise SpecError(
            f"{where}: `escalate_below` must be a number in (0, 1] (rows with a lower confidence are escalated) "
            f"e.g. escalate_below=0.8; got {value!r}."
        )
    return float(value)
