"""Azure OpenAI's Batch API: OpenAI's files and batches under `<base_url>/openai`, with `api-version` on
every call and the key in `api-key`. Its lines' `url` is `/chat/completions` and their body's `model`
is the (Global-Batch) deployment name."""

from __future__ import annotations

from typing import Any

from .openai_batch import OpenAIBatchClient

AZURE_BATCH_ENDPOINT = "/chat/completions"


class AzureBatchClient(OpenAIBatchClient):
    endpoint = AZURE_BATCH_ENDPOINT
    max_lines = 100_000  # Azure's limit per input file (OpenAI's is 50,000); 200 MB all the same

    def __init__(self, *, api_version: str, **options: Any) -> None:
        """`options` are OpenAIBatchClient's; `base_url` is the resource endpoint."""
        super().__init__(**options)
        self._api_version = api_version

    def url(self, path: str) -> str:
        return f"{self._base}/openai{path}"

    def query(self) -> dict[str, str]:
        return {"api-version": self._api_version}

    def auth(self, key: str) -> dict[str, str]:
        return {"api-key": key}

    def not_found(self, message: str) -> str:
        return (
            f"{message}. With provider azure, check `base_url` ({self._base}, the resource endpoint), that "
            f"api_version {self._api_version!r} serves the Batch API (2024-10-21 does), and that `model` is a "
            "Global-Batch deployment of this resource."
        )
