"""What both faces build batch mode from: the runner a config asks for, and the error of jobs that
outlived `batch_timeout`."""

from __future__ import annotations

from ..config import LlmConfig
from ..errors import BatchPendingError
from ..pricing import PriceTable
from ..providers.factory import build_batch_client
from .lines import BatchRecord
from .runner import BatchRunner, BatchSettings


def runner_for(config: LlmConfig, prices: PriceTable) -> BatchRunner:
    settings = BatchSettings(poll_initial=config.batch_poll_interval, pack_chars=config.max_input_chars)
    return BatchRunner(build_batch_client(config), prices=prices, settings=settings)


def pending_error(where: str, batch_timeout: float, pending: list[BatchRecord]) -> BatchPendingError:
    ids = ", ".join(record.batch_id for record in pending)
    waiting = sum(len(record.keys) for record in pending)
    return BatchPendingError(
        f"dbt_llm: {where} waited batch_timeout={batch_timeout:g}s for batch job(s) "
        f"{ids} ({waiting} request(s)), which have not ended; nothing was written for this model. The jobs "
        "are recorded in llm_batch_jobs: the next run collects them and sends none of their requests again. "
        "Run it later, or raise batch_timeout."
    )
