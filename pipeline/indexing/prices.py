"""Prices: the money side of a plan (a price table in TOML, per-model prices from genai-prices, dated overrides)."""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ragindex.errors import PriceTableError  # noqa: F401  (raised here; defined with the rest)
from ragindex.store.paths import home

PRICES_FILE = Path(__file__).with_name("prices.toml")


class Prices(BaseModel):
    """The price table: per device-hour for self-hosted embedding, per 1M tokens for hosted APIs."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    cuda_hour_usd: float = Field(ge=0)
    cpu_hour_usd: float = Field(ge=0)
    hosted: dict[str, float] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None) -> "Prices":
        path = Path(path or os.environ.get("RAGINDEX_PRICES") or PRICES_FILE)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
            if not isinstance(raw.get("self_hosted", {}), dict) or not isinstance(raw.get("hosted", {}), dict):
                raise ValueError("[self_hosted] and [hosted] must be tables")
            return cls(**raw.get("self_hosted", {}), hosted=raw.get("hosted", {}))
        except (OSError, tomllib.TOMLDecodeError, ValueError, TypeError) as exc:
            raise PriceTableError(f"{path}: bad price table ({str(exc).splitlines()[0]}); fix it or pass --prices FILE") from None

    def hour_usd(self, device: str) -> float:
        return self.cuda_hour_usd if device.startswith("cuda") else self.cpu_hour_usd

    def seconds_usd(self, seconds: float, device: str) -> float:
        return seconds / 3600.0 * self.hour_usd(device)

    def hosted_usd(self, tokens_cl100k: int) -> dict[str, float]:
        return {name: tokens_cl100k / 1e6 * p for name, p in self.hosted.items()}

    def run_usd(self, embedder, tokens: int, seconds: float) -> float:
        """What embedding costs: billed tokens at the model's price for an API, device time for a local model."""
        if embedder.device == "api":
            price = model_price(embedder).usd_per_mtok
            return tokens / 1e6 * price if price is not None else 0.0
        return self.seconds_usd(seconds, embedder.device)


@dataclass(frozen=True)
class ModelPrice:
    usd_per_mtok: float | None  # None: unknown (a self-hosted endpoint, or a model no table knows)
    source: str


def overrides_file() -> Path:
    """``$RAGINDEX_PRICE_OVERRIDES``, default ``$RAGINDEX_HOME/price-overrides.toml``."""

    return Path(os.environ.get("RAGINDEX_PRICE_OVERRIDES") or home() / "price-overrides.toml")


def model_price(embedder) -> ModelPrice:
    """A hosted model's price per million input tokens: the dated override file first, then genai-prices.

    The override file holds one table per model, with the date the price was read::

        ["openai:text-embedding-3-small"]
        usd_per_mtok = 0.02
        as_of = 2026-12-01
    """
    f = overrides_file()
    if f.exists():
        try:
            raw = tomllib.loads(f.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise PriceTableError(f"{f}: unreadable price overrides ({exc})") from None
        entry = raw.get(embedder.name)
        if entry is not None:
            if not isinstance(entry, dict) or not isinstance(entry.get("usd_per_mtok"), (int, float)) \
                    or not math.isfinite(entry["usd_per_mtok"]) or entry["usd_per_mtok"] < 0 or "as_of" not in entry:
                raise PriceTableError(f"{f}: [{embedder.name!r}] needs usd_per_mtok (a number >= 0) and as_of (a date)")
            return ModelPrice(float(entry["usd_per_mtok"]), f"override file {f.name}, as of {entry['as_of']}")
    settings = getattr(embedder, "settings", None)
    if settings is None:
        return ModelPrice(None, "not a hosted model")
    try:
        from importlib.metadata import version

        from genai_prices import Usage, calc_price

        p = calc_price(Usage(input_tokens=1_000_000), settings.model, provider_api_url=settings.base_url)
        return ModelPrice(float(p.total_price), f"genai-prices {version('genai-prices')} ({p.provider.name} {p.model.id})")
    except (LookupError, ValueError) as exc:
        return ModelPrice(None, f"unknown: no price for {settings.model} at {settings.base_url} ({str(exc).splitlines()[0]}); "
                                f"add it to {f}")
