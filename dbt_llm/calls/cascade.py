"""A cascade (`escalate_to=`, `escalate_below=` on llm_classify and llm_filter): every row is asked of the
call's model; the rows whose confidence is below the threshold (or unknown) are asked of `escalate_to`,
whose answer is final. Each model's task is the one a plain call with that model makes, so both share
the plain calls' cache entries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import SpecError
from ..functions.tasks import Task, build_task

AUTO = "auto"
DEFAULT_TARGET = 0.95


@dataclass(frozen=True)
class Cascade:
    """The model asked when the first is not sure, and below which confidence it is asked. With
    escalate_below='auto' the threshold is chosen from the golden set when the model's SQL renders
    (`target` being the golden agreement with `large` it aims for); until then it is 1.0."""

    large: Task
    threshold: float
    auto: bool = False
    target: float = DEFAULT_TARGET

    @property
    def shown(self) -> str:
        """What makes the cascade's SQL: part of the handle."""
        return f"cascade {self.large.spec_hash} " + (f"auto {self.target}" if self.auto else f"{self.threshold}")


@dataclass(frozen=True)
class Choice:
    """escalate_below='auto': the threshold chosen, and the golden agreement with the large model it gives."""

    threshold: float
    agree: int  # golden inputs whose cascade answer is the large model's
    inputs: int  # golden inputs both models answered
    escalated: int  # of which below the threshold (or of unknown confidence)
    reached: bool  # whether agree / inputs reached the target (else: 1.0, the most it can escalate)

    @property
    def agreement(self) -> float | None:
        return self.agree / self.inputs if self.inputs else None


def choose_threshold(answers: Sequence[tuple[object, float | None, object]], target: float) -> Choice:
    """The lowest threshold t among the small model's confidences (and 1.0) at which the cascade's
    answers (the small model's where its confidence >= t, else the large model's) agree with the large
    model's on at least `target` of the golden inputs, each given as (small answer, its confidence,
    large answer). None reaches it (or there is no input): 1.0, every input below full confidence escalated."""
    n = len(answers)
    candidates = sorted({c for _, c, _ in answers if c is not None and 0 < c < 1} | {1.0})
    choice = Choice(1.0, 0, 0, 0, False)
    for t in candidates:
        kept = [(small, large) for small, c, large in answers if c is not None and c >= t]
        agree = sum(small == large for small, large in kept) + n - len(kept)
        choice = Choice(t, agree, n, n - len(kept), n > 0 and agree >= target * n - 1e-9)
        if choice.reached:
            return choice
    return choice


def plan_cascade(
    args: dict[str, Any],
    task: Task,
    *,
    provider: str,
    temperature: float,
    logprobs: bool,
    target: float = DEFAULT_TARGET,
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
    auto = below == AUTO
    threshold = 1.0 if auto else _threshold(below, where)
    if auto and not args.get("golden"):
        raise SpecError(
            f"{where}: escalate_below='auto' chooses the threshold from a golden set, and the call has none: add "
            "golden=ref('<golden set>') (columns input, expected), or give escalate_below a number, e.g. 0.8."
        )
    target = _target(args.get("cascade_target"), auto, where, target)
    large = build_task(
        {**args, "model": escalate_to},
        provider=provider,
        default_model=escalate_to,
        temperature=temperature,
        logprobs=logprobs,
    )
    return Cascade(large, threshold, auto, target)


def _target(value: Any, auto: bool, where: str, default: float) -> float:
    if value is None:
        return default
    if not auto:
        raise SpecError(
            f"{where}: `cascade_target` is the golden agreement escalate_below='auto' aims for; with a number for "
            "escalate_below it has no use: remove it, or set escalate_below='auto' with golden=."
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise SpecError(
            f"{where}: `cascade_target` must be a number in (0, 1], the share of golden inputs on which the cascade "
            f"agrees with escalate_to, e.g. cascade_target=0.95; got {value!r}."
        )
    return float(value)


def _threshold(value: Any, where: str) -> float:
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
