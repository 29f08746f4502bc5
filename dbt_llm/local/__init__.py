"""Local models: a pinned registry of small GGUF files (`registry`), fetching and verifying them
(`pull`), and an embedded llama.cpp server speaking the OpenAI chat-completions API on 127.0.0.1
(`server`, needs the `local` extra).

The `pull()` function is not re-exported here, so that `dbt_llm.local.pull` always names the module
(for `monkeypatch`/`mock.patch`): use `from dbt_llm.local.pull import pull`.
"""

from .pull import default_cache_dir, model_path, verify
from .registry import DEFAULT_MODEL, MODELS, LocalModel, LocalModelError, get_model

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "LocalModel",
    "LocalModelError",
    "default_cache_dir",
    "get_model",
    "model_path",
    "verify",
]
