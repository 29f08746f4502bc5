"""Whether a model (or one microbatch batch) fails once its rows ran, and the message that says
why and what to do. Pure functions of the ledgers: nothing is sent or written here."""

from __future__ import annotations

from ..engine.budget import Budget
from ..errors import BudgetExceededError, DbtLlmError, RowFailuresError
from .ledger import EstimateTotal, Ledger, estimate_text


def errors_query(schema: str | None, invocation_id: str, node_id: str) -> str:
    return f"select * from {schema}.llm_errors where invocation_id = '{invocation_id}' and node_id = '{node_id}'"


def budget_error(where: str, budget: Budget, skipped: int, *, batch: bool = False) -> DbtLlmError:
    """`budget` is the one the model's requests drew on: its own cap (if any), then the invocation's."""
    spent = []
    level: Budget | None = budget
    while level is not None:
        owner = "this invocation" if level.parent is None else "this model (meta dbt_llm.max_cost_usd)"
        if level.cap_usd is not None:
            spent.append(f"{owner} spent ${level.spent_usd:.4f} of max_cost_usd ${level.cap_usd:g}")
        level = level.parent
    rerun = "run `dbt retry` to finish only this batch's rows" if batch else "run again to finish only the rows left"
    return BudgetExceededError(
        f"dbt_llm: budget reached in {where}: {'; '.join(spent)}; {skipped} row(s) are left without an answer. "
        f"Paid answers are cached: raise `max_cost_usd` (or remove it) and {rerun}."
    )


_AGAIN = (
    "a rerun fails them again (an input longer than max_input_chars with on_long_input: fail, or one the "
    "provider refused): change the input or the setting"
)


def _retried(failed: int | str, lasting: int, retry: str) -> str:
    """What the next run does with `failed` rows of which `lasting` fail again on every run."""
    if not lasting or not isinstance(failed, int):
        return f"They are not cached, so {retry}"
    if lasting >= failed:
        return "They are not cached, but " + _AGAIN
    return f"{failed - lasting} are not cached, so {retry}; for the other {lasting}, {_AGAIN}"


def rows_failed(
    node_id: str, failed: int | str, query: str, *, lasting: int = 0, by_function: dict[str, int] | None = None
) -> DbtLlmError:
    """`failed` answers are missing; `lasting` of them fail again on every run; `by_function`: how many per
    function (a row of a model with three functions can miss three answers)."""
    counted = f"{failed} row(s) of {node_id} got no valid answer"
    if by_function and len(by_function) > 1:
        per = ", ".join(f"{n} of llm_{function}" for function, n in sorted(by_function.items()))
        counted = f"{failed} answer(s) in {node_id} are missing ({per})"
    retried = _retried(failed, lasting, "the next run retries them")
    return RowFailuresError(
        f"dbt_llm: {counted}. {retried}. See why: {query}. To keep NULLs instead of failing, set on_error: null."
    )


def batch_failed(where: str, texts: int, query: str, *, lasting: int = 0) -> DbtLlmError:
    retried = _retried(texts, lasting, "`dbt retry` reruns this batch and retries only them")
    return RowFailuresError(
        f"dbt_llm: {texts} text(s) of {where} got no valid answer, so this batch was not written (each microbatch "
        f"batch fails on its own rows). {retried}. See why: {query}. To keep NULLs instead of failing, set "
        "on_error: null."
    )


def dry_run_note(
    node_id: str, ledgers: list[Ledger], materialized: str, total: EstimateTotal, *, created: bool = False
) -> str:
    """A dry run does not fail its model, so the models downstream are estimated in the same pass.
    `created`: the dry run had to create the model's table (it keeps it until the run ends)."""
    estimated = sum(lg.est_requests for lg in ledgers)
    batches = len({lg.batch_id for lg in ledgers if lg.batch_id})
    built = (
        "built from cached answers, with NULL where a call would be needed (the next run rebuilds the table)"
        if materialized == "table"
        else "built from cached answers, with NULL where a call would be needed"
        + (f" (its first batch of {batches})" if batches else "")
        + ", for the models downstream; it did not exist, so it is dropped when the run ends"
        if created
        else f"not built: each of its {batches} batch(es) was priced and none written; models downstream read "
        "its previous state"
        if batches
        else f"not built: its {materialized} build was rolled back, since NULLs committed to it would never be "
        "revisited; models downstream read its previous state"
    )
    return (
        f"dry run: {node_id} would send {estimated} request(s): "
        + "; ".join(estimate_text(lg) for lg in ledgers if lg.est_requests)
        + f". Nothing was sent; the model was {built}. Dry run so far: {total.text()}."
    )
