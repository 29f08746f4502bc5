"""What batch/runner.py asks of a provider's Batch API, whichever its wire format: OpenAI's files and
batches (openai_batch.py) or Anthropic's Message Batches (anthropic_batch.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from .openai_batch import BatchStatus, ResultLine


class BatchClient(Protocol):
    max_lines: int  # the API's most requests in one batch
    max_bytes: int  # ... and the most bytes of them

    def request_line(self, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """One request of a batch; `body` is the chat body (openai.chat_body) the realtime path would send."""
        ...

    def wire_id(self, custom_id: str) -> str:
        """The custom_id as sent (the same one, unless the API restricts its form); a pure function, so
        a later run derives it from the custom_id recorded in llm_batch_job_keys."""
        ...

    def upload(self, jsonl: bytes, filename: str) -> str:
        """Hand over the request lines of one batch; returns the id `create` takes."""
        ...

    def create(
        self, input_file_id: str, *, completion_window: str = "24h", metadata: Mapping[str, str] | None = None
    ) -> BatchStatus: ...

    def recent(self, limit: int = 100) -> list[BatchStatus]:
        """The latest batches, each with the `input_file_id` it was created from where that is known:
        after a lost create answer the runner looks for its batch there before creating another."""
        ...

    def get(self, batch_id: str) -> BatchStatus: ...

    def cancel(self, batch_id: str) -> BatchStatus: ...

    def content(self, file_id: str) -> bytes:
        """The JSONL of an output (or error) file, by the id (or URL) its BatchStatus names."""
        ...

    def parse_result_line(self, line: Mapping[str, Any]) -> ResultLine: ...

    def close(self) -> None: ...
