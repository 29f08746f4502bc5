"""The provider the plugin config asks for: an OpenAI-compatible endpoint, Azure OpenAI's deployments,
Anthropic's Messages API, or the embedded models served by llama.cpp on 127.0.0.1 through the OpenAI client."""

from __future__ import annotations

import atexit
from collections.abc import Callable

from ..config import LlmConfig
from .anthropic import AnthropicProvider
from .anthropic_batch import AnthropicBatchClient
from .azure import AzureProvider
from .azure_batch import AzureBatchClient
from .base import Provider
from .batch_api import BatchClient
from .openai import OpenAIProvider
from .openai_batch import OpenAIBatchClient


def build_provider(config: LlmConfig, on_exit: Callable[[], None] = lambda: None) -> Provider:
    """Built on the first request, so a fully cached run needs no key and starts no model. `on_exit`
    runs at exit before the embedded server stops (to close connections first)."""
    if config.provider == "local":
        return _local_provider(config, on_exit)
    if config.provider == "anthropic":
        return AnthropicProvider(
            base_url=config.base_url,
            api_key=config.api_key,
            api_key_env=config.api_key_env,
            timeout=config.request_timeout,
            max_connections=config.max_concurrency,
            headers=config.request_headers,
        )
    if config.provider == "azure":
        return AzureProvider(
            base_url=config.base_url,
            api_version=config.api_version,
            api_key=config.api_key,
            timeout=config.request_timeout,
            max_connections=config.max_concurrency,
            headers=config.request_headers,
        )
    return OpenAIProvider(
        base_url=config.base_url,
        api_key=config.api_key,
        timeout=config.request_timeout,
        max_connections=config.max_concurrency,
        headers=config.request_headers,
    )


def build_batch_client(config: LlmConfig) -> BatchClient:
    """The Batch API of the configured provider: OpenAI's, Azure's, or Anthropic's Message Batches."""
    timeout = max(config.request_timeout, 120.0)  # uploads and creates carry a whole batch
    if config.provider == "anthropic":
        return AnthropicBatchClient(
            base_url=config.base_url,
            api_key=config.api_key,
            api_key_env=config.api_key_env,
            timeout=timeout,
            headers=config.request_headers,
        )
    if config.provider == "azure":
        return AzureBatchClient(
            base_url=config.base_url,
            api_version=config.api_version,
            api_key=config.api_key,
            api_key_env=config.api_key_env,
            timeout=timeout,
            headers=config.request_headers,
        )
    return OpenAIBatchClient(
        base_url=config.base_url,
        api_key=config.api_key,
        api_key_env=config.api_key_env,
        timeout=timeout,
        headers=config.request_headers,
    )


def _local_provider(config: LlmConfig, on_exit: Callable[[], None]) -> Provider:
    """llama.cpp's OpenAI-compatible server in this process, one per model asked for: the same code path
    (retries, validation, cache, audit) as any remote endpoint."""
    from ..local.server import Slots
    from .local import LocalProvider

    provider = LocalProvider(
        Slots(n_parallel=config.local_parallel, n_threads=config.local_threads), config.request_timeout
    )
    atexit.register(on_exit)  # after the servers' exit hook, so it runs first: close connections, then stop them
    return provider
