"""Model providers: they send one request and report usage; they know nothing of caching."""

from .base import Completion, FatalProviderError, Provider, RowError, TransientError, Usage
from .openai import OpenAIProvider

__all__ = ["Completion", "FatalProviderError", "OpenAIProvider", "Provider", "RowError", "TransientError", "Usage"]
