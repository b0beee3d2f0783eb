"""``ragindex serve``: a warm HTTP search service with per-tenant keys (FastAPI + uvicorn).

The model is loaded once, at start, and every tenant's live generation stays
loaded between requests (segments are shared between generations, so a
promotion loads only what is new). Each request reads the tenant's ``CURRENT``:
a promotion is picked up without a restart, requests already running finish on
the generation they started with, and none fails during the switch.

Endpoints (OpenAPI at ``/docs``):

* ``POST /v1/tenants/{tenant}/search``: ``{query, k, mode, filter}``;
* ``POST /v1/tenants/{tenant}/search/batch``: ``{queries, k, mode, filter}``;
* ``GET /healthz`` (the process is up), ``GET /readyz`` (the model is loaded),
  ``GET /metrics`` (Prometheus: requests, latency, generation served per tenant).

Every search needs ``Authorization: Bearer <key>`` with a key of that tenant
(``ragindex keys create``). A missing, wrong, revoked or other tenant's key, and
a tenant that does not exist, all get the same 401. Queries, ``k`` and batches
are bounded (413 / 422, with the limit in the message).
"""

import contextlib
import threading
import time
from typing import Literal, Optional

from pydantic import BaseModel, Field

from ragindex.api import Ragindex
from ragindex.search.filters import FilterError
from ragindex.search.searcher import tenant_mode
from ragindex.store import keys
from ragindex.store.manifests import GenerationError

MAX_QUERY_CHARS = 2000
MAX_K = 100
MAX_BATCH = 64


class SearchRequest(BaseModel):
    query: str = Field(description=f"The question or keywords (at most {MAX_QUERY_CHARS} characters).")
    k: int = Field(5, ge=1, le=MAX_K, description=f"Hits to return, 1 to {MAX_K}.")
    mode: Optional[Literal["dense", "bm25", "hybrid"]] = Field(None, description="Default: the tenant's mode.")
    filter: Optional[dict] = Field(None, description='Metadata filter, e.g. {"team": "search", "year": {">": 2020}}.')


class BatchRequest(BaseModel):
    queries: list[str] = Field(description=f"Up to {MAX_BATCH} queries, each at most {MAX_QUERY_CHARS} characters.")
    k: int = Field(5, ge=1, le=MAX_K)
    mode: Optional[Literal["dense", "bm25", "hybrid"]] = None
    filter: Optional[dict] = None


class HitOut(BaseModel):
    rank: int
    score: float
    doc_id: str
    chunk_id: str
    start: int
    end: int
    text: str
    heading_path: list[str]
    page: Optional[int] = None  # PDF page or slide (1-based) where the chunk starts; None without pages
    page_end: Optional[int] = None  # ... and where it ends


class SearchResponse(BaseModel):
    tenant: str
    generation: str
    mode: str
    hits: list[HitOut]


class BatchResponse(BaseModel):
    tenant: str
    generation: str
    mode: str
    results: list[list[HitOut]]


def create_app(rx: Ragindex):
    """The FastAPI application over ``rx`` (its store, its model)."""
    from fastapi import Depends, FastAPI, Header, HTTPException, Response
    from fastapi.responses import JSONResponse
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

    registry = CollectorRegistry()
    requests = Counter("ragindex_requests_total", "Search requests by tenant, mode and HTTP status",
                       ["tenant", "mode", "status"], registry=registry)
    latency = Histogram("ragindex_request_seconds", "Search latency (model forward pass included)", ["mode"],
                        buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5), registry=registry)
    served = Gauge("ragindex_generation_served", "1 for the generation each tenant is served from", ["tenant", "generation"],
                   registry=registry)
    state = {"ready": False, "served": {}}
    lock = threading.Lock()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        rx.embedder_for(None)  # load the default model before the first request
        state["ready"] = True
        yield

    app = FastAPI(title="ragindex", version="1", lifespan=lifespan,
                  description="Search a tenant's live index: dense, bm25 or hybrid, with metadata filters.")

    def authorized(tenant: str, authorization: Optional[str] = Header(None)) -> str:
        key = authorization[7:].strip() if authorization and authorization.lower().startswith("bearer ") else None
        # The same answer for a wrong key and for a tenant that does not exist (no existence leak).
        try:
            ok = keys.check(rx.store, tenant, key)
        except ValueError:  # an invalid tenant name
            ok = False
        if not ok:
            requests.labels("-", "-", "401").inc()
            raise HTTPException(401, "missing or invalid API key for this tenant", headers={"WWW-Authenticate": "Bearer"})
        return tenant

    def bounded(queries: list[str]) -> None:
        for q in queries:
            if len(q) > MAX_QUERY_CHARS:
                raise HTTPException(413, f"query of {len(q)} characters; the limit is {MAX_QUERY_CHARS}")
            if not q.strip():
                raise HTTPException(422, "empty query")

    def run(tenant: str, queries: list[str], k: int, mode: Optional[str], flt: Optional[dict]):

        t0 = time.perf_counter()
        handle = rx.tenant(tenant)
        try:
            used = handle_mode(handle, mode)
            results = handle.search_many(queries, k=k, mode=used, filter=flt)
        except FilterError as exc:
            requests.labels(tenant, mode or "-", "422").inc()
            raise HTTPException(422, str(exc)) from None
        except GenerationError as exc:
            requests.labels(tenant, mode or "-", "503").inc()
            raise HTTPException(503, str(exc)) from None
        found = [h.generation for row in results for h in row]
        gen = found[0] if found else rx.searcher(tenant, needs_model=used != "bm25").generation(tenant).gen_id
        latency.labels(used).observe(time.perf_counter() - t0)
        requests.labels(tenant, used, "200").inc()
        with lock:
            old = state["served"].get(tenant)
            if old != gen:
                if old is not None:
                    served.remove(tenant, old)
                served.labels(tenant, gen).set(1)
                state["served"][tenant] = gen
        return gen, used, [[HitOut(**{k: v for k, v in h.to_dict().items() if k != "generation"}) for h in row] for row in results]

    def handle_mode(handle, mode: Optional[str]) -> str:

        return mode or tenant_mode(handle.settings)

    @app.post("/v1/tenants/{tenant}/search", response_model=SearchResponse)
    def search(body: SearchRequest, tenant: str = Depends(authorized)) -> SearchResponse:
        bounded([body.query])
        gen, mode, rows = run(tenant, [body.query], body.k, body.mode, body.filter)
        return SearchResponse(tenant=tenant, generation=gen, mode=mode, hits=rows[0])

    @app.post("/v1/tenants/{tenant}/search/batch", response_model=BatchResponse)
    def search_batch(body: BatchRequest, tenant: str = Depends(authorized)) -> BatchResponse:
        if len(body.queries) > MAX_BATCH:
            raise HTTPException(413, f"batch of {len(body.queries)} queries; the limit is {MAX_BATCH}")
        if not body.queries:
            raise HTTPException(422, "empty batch")
        bounded(body.queries)
        gen, mode, rows = run(tenant, body.queries, body.k, body.mode, body.filter)
        return BatchResponse(tenant=tenant, generation=gen, mode=mode, results=rows)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        if not state["ready"]:
            return JSONResponse({"status": "loading the model"}, status_code=503)
        return {"status": "ready"}

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def serve(rx: Ragindex, host: str = "127.0.0.1", port: int = 8080, log_level: str = "warning") -> None:
    """Run the service until SIGINT/SIGTERM; requests in flight finish before it exits."""
    import uvicorn

    uvicorn.run(create_app(rx), host=host, port=port, log_level=log_level, timeout_graceful_shutdown=30)
