"""`provider: azure`: Azure OpenAI's deployments. The wire format is OpenAI's; what differs is the route
(`<base_url>/openai/deployments/<deployment>/<operation>?api-version=...`, the model named by its
deployment) and the key's header (`api-key`). Its Batch API is in azure_batch.py."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from .http import error_message, shown_url
from .openai import OpenAIProvider


def deployment_route(root: str, deployment: str, operation: str, api_version: str) -> str:
    """The URL of one operation (chat/completions, embeddings) of one deployment."""
    return f"{root}/openai/deployments/{quote(deployment, safe='')}/{operation}?api-version={quote(api_version)}"


def azure_not_found(said: str, model: str, base: str, api_version: str) -> str:
    """A 404 from Azure is a deployment that does not exist, a wrong resource, or an api-version it does not
    serve: name all three, since Azure's own words rarely say which."""
    return (
        f"{said.rstrip('.')}. With provider azure, `model` (or model=) is the deployment name: check that deployment "
        f"{model!r} exists in the resource at base_url {base} (Azure portal: Deployments), that base_url is "
        f"the resource endpoint (https://<resource>.openai.azure.com), and that api_version {api_version!r} "
        "is one Azure serves."
    )


class AzureProvider(OpenAIProvider):
    name = "azure"

    def __init__(self, *, api_version: str, **options: Any) -> None:
        """`options` are OpenAIProvider's; `base_url` is the resource endpoint."""
        super().__init__(**options)
        self._api_version = api_version

    def route(self, model: str, operation: str) -> str:
        return deployment_route(self._root, model, operation, self._api_version)

    def auth(self, key: str) -> dict[str, str]:
        return {"api-key": key}

    def wire(self, body: dict[str, Any]) -> dict[str, Any]:
        # The route names the deployment; Azure's published requests have no `model` (batch lines do).
        return {key: value for key, value in body.items() if key != "model"}

    def _not_found(self, response: httpx.Response, secrets: list[str], model: str) -> str:
        said = f"HTTP 404 from {shown_url(str(response.request.url))}: {error_message(response, secrets)}"
        return azure_not_found(said, model, self._base, self._api_version)
