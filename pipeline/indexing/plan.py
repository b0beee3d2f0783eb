"""Know the cost before spending: the plan of a reindex, prices, throughput and budgets."""

from __future__ import annotations

import json
import math
import re
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from ragindex.arguments import number, whole
from ragindex.chunkers.tokenizers import get_tokenizer
from ragindex.embedders.limits import PROBE_TEXTS
from ragindex.errors import BudgetExceeded  # noqa: F401  (raised here; defined with the rest)
from ragindex.fsutil import atomic_write_text, sha256_text
from ragindex.indexing.chunk import embed_texts
from ragindex.indexing.prices import ModelPrice, Prices, model_price  # noqa: F401


@dataclass
class Plan:
    """What a run will do and cost, known before any embedding. Exact for texts and tokens.

    Document and chunk counts describe the whole tenant after the run; text,
    token and money figures describe what this run embeds (the chunks of new and
    changed documents whose text the tenant's cache does not hold yet).

    For a paid model, everything the run sends is here: the texts, the tenant's
    eval-set queries its quality gate needs (``eval_*``) and the drift probe
    (``probe_tokens``); ``total_tokens`` and ``total_cost_usd`` add them up, and the
    budget is checked on them.
    """

    tenant: str
    chunker: str
    chunker_fp: str
    embedder: str
    embedder_fp: str
    device: str
    base_generation: str | None
    rebuild: str | None  # why every document goes into a new segment, if so
    docs_new: int
    docs_changed: int
    docs_deleted: int
    docs_unchanged: int
    docs_skipped: int
    docs_kept_unreadable: int  # live documents whose file or folder could not be read: kept as they were
    files_seen: int
    files_read: int  # files (or record files) actually read; the rest had an unchanged stat
    docs_chunked: int
    docs_reused: int  # new or changed documents whose chunks were copied (same content already held)
    chunks_total: int
    chunks_unchanged: int
    chunks_new: int
    chunks_removed: int
    unique_texts: int  # distinct texts among this run's new chunks
    vectors_reused: int  # of those, already in the tenant's cache
    duplicates_in_run: int  # new chunks whose text another new chunk already brings
    texts_to_embed: int
    tokens_to_embed: int  # model tokens, as the model will process them
    tokens_to_embed_cl100k: int  # hosted-price equivalent
    truncated_chunks: int  # new chunks over the model's input limit: the model sees only their start
    truncated_to_embed: int
    max_input_tokens: int
    throughput_tokens_per_s: float
    throughput_source: str
    est_seconds: float
    cost_usd: float  # an API's price per token, or the device-hour price for a local model (0.0 if not cost_known)
    price_source: str = ""
    cost_known: bool = True  # False: a hosted model no price table knows (a money budget cannot be checked; report() says null)
    probe_tokens: int = 0  # a hosted model's drift probe, sent once per paying run
    # A paid model's eval-set queries the quality gate scores with, not in the cache yet (embedded with the texts,
    # cached by the same content-hash key). A local model's go through the evaluation cache, as they cost no money.
    eval_texts_to_embed: int = 0
    eval_tokens_to_embed: int = 0
    hosted_usd: dict[str, float] = field(default_factory=dict)
    # text_hash -> text of what will be embedded, longest first, and per-text token
    # counts (model, cl100k); the embed stage reuses them instead of tokenising
    # again, and they are what makes the ledger equal the plan. Not in the report.
    # A schema that cuts on embeddings (cluster) embeds its pieces first, through the same cache and ledger.
    # Until they are embedded the chunk figures above are a bound (each piece its own chunk): exact is False.
    chunker_texts_to_embed: int = 0
    chunker_tokens_to_embed: int = 0
    chunker_cost_usd: float = 0.0
    chunker_est_seconds: float = 0.0
    exact: bool = True
    # PDF, DOCX, PPTX and HTML files: converted (files, pages, seconds), from the conversion cache, failed, and
    # read again because their converter changed, with how many of those have new text (ingest.changes.Conversions).
    conversions: dict = field(default_factory=dict)
    # how the model runs, where it says (the ONNX variants: the quantisation picked for this CPU)
    embedder_detail: str = ""
    to_embed: dict[str, str] = field(default_factory=dict, repr=False)
    to_embed_tokens: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False)
    skipped: list = field(default_factory=list, repr=False)  # inputs skipped with a reason (Skipped); not in the report

    @property
    def total_tokens(self) -> int:
        """Model tokens this run sends: chunks, a clustering chunker's pieces, eval-set queries and the drift probe."""
        return self.tokens_to_embed + self.chunker_tokens_to_embed + self.eval_tokens_to_embed + self.probe_tokens

    @property
    def ledger_tokens(self) -> int:
        """What this plan's own ledger row plans to send (a clustering chunker's pieces have their own row)."""
        return self.tokens_to_embed + self.eval_tokens_to_embed + self.probe_tokens

    @property
    def total_cost_usd(self) -> float:
        return self.cost_usd + self.chunker_cost_usd

    def with_chunker_embeddings(self, pieces: "Plan", exact: bool) -> "Plan":
        """This plan plus the pieces a clustering chunker embeds (``pieces``: their own plan)."""
        from dataclasses import replace

        return replace(self, chunker_texts_to_embed=pieces.texts_to_embed, chunker_tokens_to_embed=pieces.tokens_to_embed,
                       chunker_cost_usd=pieces.cost_usd, chunker_est_seconds=pieces.est_seconds, exact=exact,
                       cost_known=self.cost_known and pieces.cost_known)

    @property
    def reused_pct(self) -> float:
        return 100.0 * self.vectors_reused / self.unique_texts if self.unique_texts else 100.0

    def usd(self, value: float | None) -> float | None:
        """A money figure of this plan as shown to people and tools: None (JSON null, "unknown") when the
        model's price is unknown, never a 0.0 that reads as free."""
        return value if self.cost_known else None

    def ledger_report(self, ledger: dict) -> dict:
        """A run's ledger row as reported beside this plan: its money is unknown when the plan's price is."""
        if self.cost_known:
            return ledger
        return {**ledger, **{k: None for k in ("cost_usd", "planned_cost_usd") if k in ledger}}

    def report(self) -> dict:
        d = asdict(self)
        d.pop("to_embed")
        d.pop("to_embed_tokens")
        d.pop("skipped")
        d["cost_usd"] = self.usd(self.cost_usd)
        d["chunker_cost_usd"] = self.usd(self.chunker_cost_usd)
        d["total_tokens"] = self.total_tokens
        d["reused_pct"] = round(self.reused_pct, 2)
        return d


@dataclass(frozen=True)
class Budget:
    """A run's limits: model tokens to embed and estimated money (None: no limit).

    Checked when made, for every way in (CLI, API, migrate, Dagster config): ``tokens`` a
    whole number >= 0, ``cost_usd`` a finite number >= 0, else ArgumentError. A NaN limit
    would pass every comparison, i.e. disable the budget.
    """

    tokens: int | None = None
    cost_usd: float | None = None

    def __post_init__(self) -> None:
        if self.tokens is not None:
            whole(self.tokens, "budget_tokens")
        if self.cost_usd is not None:
            number(self.cost_usd, "max_cost")

    def violations(self, plan: Plan) -> list[str]:
        out = []
        bound = "" if plan.exact else " (at most: the chunks are known once the chunker's pieces are embedded)"
        if self.tokens is not None and plan.total_tokens > self.tokens:
            out.append(f"{plan.total_tokens:,} tokens to embed{bound} > --budget-tokens {self.tokens:,}")
        if self.cost_usd is not None and not plan.cost_known and (plan.texts_to_embed or plan.chunker_texts_to_embed):
            out.append(f"--max-cost cannot be checked: {plan.price_source}")
        elif self.cost_usd is not None and plan.total_cost_usd > self.cost_usd:
            out.append(f"estimated ${plan.total_cost_usd:.6f}{bound} > --max-cost ${self.cost_usd:.6f}")
        return out


def make_plan(staged, cached: set[str], embedder, prices: Prices, throughput: "Throughput",
              queries: Sequence[str] = (), probe: bool = True) -> Plan:
    """The plan of a staged run. ``cached``: which of its text hashes (and queries') the cache holds for this embedder.

    Each new text is tokenised once with the model's tokenizer; cl100k counts
    come from the chunker's own counts when the schema counts in cl100k_base.
    ``queries``: a paid model's eval-set queries the run's quality gate scores with
    (those not cached are embedded with the texts). ``probe``: whether this plan's
    ledger row sends the run's drift probe when it sends anything.
    """
    cs = staged.changes
    rows = staged.rows
    hashes = rows.column("text_hash").to_pylist()
    headers = staged.context_headers
    texts = embed_texts(rows, headers)  # what the model sees (a context header above the chunk, if the schema has one)
    schema_counts = rows.column("token_count").to_pylist()
    first: dict[str, int] = {}
    for i, h in enumerate(hashes):
        first.setdefault(h, i)
    uniq = list(first)
    full = embedder.full_token_counts([texts[first[h]] for h in uniq])
    limit = embedder.max_seq_length
    missing = [j for j, h in enumerate(uniq) if h not in cached]
    # A local model truncates what is over its input; an API refuses it, so its counts stay whole.
    counts = [full[j] if embedder.device == "api" else min(full[j], limit) for j in missing]
    if cs.config.tokenizer == "cl100k_base" and not headers:  # the chunker counted the chunk, not its header
        cl100k_each = [schema_counts[first[uniq[j]]] for j in missing]
    else:
        cl100k_each = get_tokenizer("cl100k_base").count_many([texts[first[uniq[j]]] for j in missing]) if missing else []
    order = sorted(range(len(missing)), key=lambda i: -counts[i])
    tokens = int(sum(counts))
    hosted = embedder.device == "api"
    asked = {sha256_text(q): q for q in queries} if hosted else {}
    new_queries = [(h, q) for h, q in asked.items() if h not in cached and h not in first]
    query_counts = embedder.full_token_counts([q for _, q in new_queries]) if new_queries else []
    probe = embedder_probe_tokens(embedder) if hosted and probe and (missing or new_queries) else 0
    sent = tokens + int(sum(query_counts)) + probe
    # nothing to embed: no rate is needed, and measuring one would load the model for nothing
    rate, source = throughput.get(embedder) if sent else (0.0, "nothing to embed")
    seconds = sent / rate if rate > 0 else 0.0
    if hosted:
        price = model_price(embedder)
        cost, cost_known, price_source = (sent / 1e6 * (price.usd_per_mtok or 0.0), price.usd_per_mtok is not None,
                                          price.source)
    else:
        cost, cost_known = prices.seconds_usd(seconds, embedder.device), True
        price_source = f"{prices.hour_usd(embedder.device)} USD per {embedder.device} hour (price table)"
    untouched = 0 if cs.rebuild else cs.base_chunks - cs.rows_replaced
    cl100k = int(sum(cl100k_each))
    counts_ = cs.counts()
    return Plan(
        tenant=cs.config.tenant, chunker=cs.config.chunker, chunker_fp=cs.config.chunker_fp, embedder=embedder.name,
        embedder_fp=embedder.fingerprint, device=embedder.device, embedder_detail=getattr(embedder, "detail", ""),
        base_generation=cs.base, rebuild=cs.rebuild,
        docs_new=counts_["docs_new"], docs_changed=counts_["docs_changed"], docs_deleted=counts_["docs_deleted"],
        docs_unchanged=counts_["docs_unchanged"], docs_skipped=counts_["docs_skipped"],
        docs_kept_unreadable=counts_["docs_kept_unreadable"], files_seen=cs.files_seen, files_read=cs.files_read,
        docs_chunked=staged.docs_chunked, docs_reused=staged.docs_reused,
        chunks_total=staged.rows_after, chunks_unchanged=untouched + staged.chunks_unchanged,
        chunks_new=staged.chunks_new, chunks_removed=staged.chunks_removed,
        unique_texts=len(uniq), vectors_reused=len(uniq) - len(missing), duplicates_in_run=len(hashes) - len(uniq),
        texts_to_embed=len(missing), tokens_to_embed=tokens, tokens_to_embed_cl100k=cl100k,
        truncated_chunks=_truncated_rows(hashes, uniq, full, limit),
        truncated_to_embed=sum(1 for j in missing if full[j] > limit), max_input_tokens=limit,
        throughput_tokens_per_s=round(rate, 1), throughput_source=source, est_seconds=round(seconds, 3),
        cost_usd=cost, price_source=price_source, cost_known=cost_known, probe_tokens=probe,
        eval_texts_to_embed=len(new_queries), eval_tokens_to_embed=int(sum(query_counts)),
        conversions=cs.conversions.to_dict(),
        hosted_usd=prices.hosted_usd(cl100k),
        to_embed={**{uniq[missing[i]]: texts[first[uniq[missing[i]]]] for i in order}, **dict(new_queries)},
        to_embed_tokens={**{uniq[missing[i]]: (counts[i], cl100k_each[i]) for i in order},
                         **{h: (n, n) for (h, _), n in zip(new_queries, query_counts)}},  # a hosted model counts in cl100k
    )


def embedder_probe_tokens(embedder) -> int:
    return sum(embedder.full_token_counts(list(PROBE_TEXTS)))


def _truncated_rows(hashes: list[str], uniq: list[str], full: list[int], limit: int) -> int:
    over = {h for h, n in zip(uniq, full) if n > limit}
    return sum(1 for h in hashes if h in over) if over else 0


# The fastest a device can plausibly embed (model tokens/s). A stored measurement
# above it is not trusted, and no estimate is ever faster: a budget in money can
# never be defeated by an absurd throughput (a file anyone who can write
# RAGINDEX_HOME could edit), because the planned seconds never fall below
# tokens / this.
MAX_TOKENS_PER_S = {"cpu": 250_000.0, "cuda": 5_000_000.0, "api": 50_000_000.0}
MIN_SAMPLE_TOKENS = 2000


def max_rate(device: str) -> float:
    return MAX_TOKENS_PER_S["cuda" if device.startswith("cuda") else "api" if device == "api" else "cpu"]


class Throughput:
    """Measured embedding throughput (model tokens/s), one file per machine, model and device.

    ``<root>/throughput/<host>-<embedder fp>-<device>.json``, written whole to a
    unique temporary name and renamed, so parallel tenant runs never corrupt it
    (the last measurement wins). A value that is not a finite, positive,
    plausible number is ignored and measured again. Updated after every real
    run; if nothing was measured yet, a short calibration embeds synthetic text
    (never tenant data, never cached).
    """

    def __init__(self, root: Path) -> None:
        self.dir = Path(root) / "throughput"

    def path(self, embedder) -> Path:
        host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:64] or "host"
        device = re.sub(r"[^A-Za-z0-9_.-]", "_", embedder.device)
        return self.dir / f"{host}-{embedder.fingerprint[:16]}-{device}.json"

    def _load(self, embedder) -> tuple[float | None, str]:
        f = self.path(embedder)
        try:
            entry = json.loads(f.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None, ""
        except (OSError, ValueError) as exc:
            return None, f"ignored unreadable {f.name} ({exc})"
        rate = entry.get("tokens_per_s") if isinstance(entry, dict) else None
        if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not math.isfinite(rate) or rate <= 0:
            return None, f"ignored {f.name}: tokens_per_s is not a finite positive number"
        if rate > max_rate(embedder.device):
            return None, f"ignored {f.name}: {rate:.3g} tokens/s is implausible on {embedder.device}"
        if entry.get("embedder_fp") != embedder.fingerprint:
            return None, f"ignored {f.name}: it was measured for another model"
        return float(rate), ""

    def record(self, embedder, tokens: int, seconds: float) -> None:
        if tokens < MIN_SAMPLE_TOKENS or not seconds > 0:  # too small to say anything about speed
            return
        rate = min(tokens / seconds, max_rate(embedder.device))
        self.dir.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"tokens_per_s": rate, "tokens": tokens, "seconds": seconds, "measured_at": time.time(),
                           "embedder": embedder.name, "embedder_fp": embedder.fingerprint, "device": embedder.device},
                          indent=2)
        atomic_write_text(self.path(embedder), body + "\n")

    def get(self, embedder) -> tuple[float, str]:
        rate, note = self._load(embedder)
        if rate is not None:
            return rate, "measured on this machine by the last run"
        if embedder.device == "api":  # calibrating would pay for synthetic text: estimate from the limit instead
            tpm = getattr(getattr(embedder, "settings", None), "tpm", None)
            if tpm:
                return tpm / 60.0, "the configured tokens-per-minute limit (RAGINDEX_API_TPM)"
            return 0.0, "not measured yet (the first run measures it)"
        rate = self.calibrate(embedder)
        return rate, "calibrated on this machine just now (synthetic text)" + (f"; {note}" if note else "")

    def calibrate(self, embedder, n: int = 64) -> float:
        words = "index chunk embedding tenant retrieval vector budget schema generation promote".split()
        texts = [" ".join(words[(i + j) % len(words)] for j in range(120)) + f" {i}" for i in range(n)]
        embedder.embed(texts[:4])  # warm-up: first call pays for lazy initialisation
        t0 = time.perf_counter()
        embedder.embed(texts)
        seconds = max(time.perf_counter() - t0, 1e-9)
        tokens = sum(embedder.token_counts(texts))
        self.record(embedder, tokens, seconds)
        return min(tokens / seconds, max_rate(embedder.device))
