"""Which embedder a tenant uses, decided in one place, and each model built once per process.

A model is named by a string: ``default`` (the bundled all-MiniLM-L6-v2 on torch),
``all-MiniLM-L6-v2-int8`` (the same weights, int8 on ONNX Runtime; ``-onnx``: fp32 on
it), ``hash`` (tests), a local sentence-transformers directory, or ``openai:MODEL`` (an
OpenAI-compatible API; ``dimensions`` is passed to it). The choice for a tenant
is, in order: an explicit model (the CLI's ``--model`` / ``$RAGINDEX_MODEL``,
``Ragindex(model=...)``, the Dagster ``EmbedderResource``), else the tenant's own
setting (``ragindex tenants add --model``), else ``default`` for a live tenant
(existing tenants keep their model), else :func:`new_tenant_model`, which the first
build records in the tenant's settings. The CLI, the Python
API, ``ragindex serve`` and the Dagster assets all resolve through
:func:`model_for` and build through :class:`Embedders`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ragindex.embedders import local
from ragindex.embedders.local import DEFAULT_MODEL, Embedder, HashEmbedder, _cached_st, local_device
from ragindex.embedders.onnx import INT8, cached_onnx, choose_quantization, variant_identity
from ragindex.embedders.onnx import VARIANTS as ONNX_VARIANTS
from ragindex.errors import MissingExtra
from ragindex.store.manifests import current_id
from ragindex.store.tenants import TenantStore


@dataclass(frozen=True)
class EmbedderConfig:
    """Which embedder to build: ``default``, ``hash``, a model directory path, or ``openai:MODEL``
    (an OpenAI-compatible API; ``dimensions`` is passed to it)."""

    model: str = "default"
    device: str | None = None
    dimensions: int | None = None

    def build(self) -> Embedder:
        if self.model == "hash":
            return HashEmbedder()
        if self.model.startswith("openai:"):
            return _hosted(self.model.split(":", 1)[1], self.dimensions)
        if self.dimensions is not None:
            raise ValueError(f"--dimensions applies to hosted models (openai:MODEL), not to {self.model!r}")
        if self.model in ("default", DEFAULT_MODEL):
            return _cached_st(None, self.device)
        if self.model in ONNX_VARIANTS:
            return cached_onnx(self.model)
        return _cached_st(str(Path(self.model).resolve()), self.device)


def _hosted(model: str, dimensions: int | None):
    # Not cached: building a client costs nothing, and its settings come from the environment of the moment.
    try:
        import genai_prices  # noqa: F401
        import openai  # noqa: F401
        import tenacity  # noqa: F401

        from ragindex.embedders.hosted import OpenAIEmbedder
        from ragindex.embedders.limits import HostedSettings
    except ImportError as exc:
        raise MissingExtra(f"--model openai:{model} needs the hosted-API extra ({exc.name} is not installed): "
                           "pip install 'ragindex[api]'") from None

    if not model:
        raise ValueError("--model openai:MODEL needs a model name, e.g. openai:text-embedding-3-small")
    return OpenAIEmbedder(HostedSettings.from_env(model, dimensions))


def model_identity(model: str) -> dict:
    """What identifies ``model`` without loading it: name, weights and configuration hashes (and, for the ONNX
    variants, the export and quantisation this CPU gets). The gate keeps it beside each baseline."""
    return variant_identity(model) if model in ONNX_VARIANTS else local.model_identity(model)


def model_for(store: TenantStore, tenant: str | None, model: str | None = None, dimensions: int | None = None,
              device: str | None = None) -> EmbedderConfig:
    """The embedder ``tenant`` uses: ``model`` if given, else the tenant's setting, else (see the module) the
    torch model for a live tenant and :func:`new_tenant_model` for a new one."""
    if model:
        return EmbedderConfig(model, device, dimensions)
    if tenant and store.exists(tenant):
        s = store.stored_settings(tenant)  # the model is the tenant's setting (only schema and mode come from the live generation)
        if s.model:
            return EmbedderConfig(s.model, device, dimensions or s.dimensions)
        if current_id(store.paths(tenant)) is not None:
            return EmbedderConfig("default", device, dimensions)  # a live tenant keeps the model it was built with
    return EmbedderConfig(new_tenant_model(device) if tenant else "default", device, dimensions)


def new_tenant_model(device: str | None = None) -> str:
    """The model a tenant with none gets at its first build: the int8 variant on a CPU that runs it as int8 (it
    passed the gate: README, "The CPU fast path"), the bundled torch model elsewhere (a GPU, a CPU without
    VNNI). ``RAGINDEX_NEW_TENANT_MODEL`` overrides it. The first build records it in the tenant's settings."""
    forced = (os.environ.get("RAGINDEX_NEW_TENANT_MODEL") or "").strip()
    if forced:
        return forced
    on_cpu = local_device(device) == "cpu"
    return INT8 if on_cpu and choose_quantization() != "fp32" else "default"


class Embedders:
    """Built embedders by configuration, so one process loads each model once (a warm server, a Dagster run)."""

    def __init__(self, model: str | None = None, dimensions: int | None = None, device: str | None = None) -> None:
        self.model, self.dimensions, self.device = model, dimensions, device
        self._built: dict[EmbedderConfig, Embedder] = {}

    def get(self, config: EmbedderConfig) -> Embedder:
        if config not in self._built:
            self._built[config] = config.build()
        return self._built[config]

    def for_tenant(self, store: TenantStore, tenant: str | None) -> Embedder:
        return self.get(model_for(store, tenant, self.model, self.dimensions, self.device))
