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
  ``GET /metrics`` (Prometheus: requests, latency; see ``create_app`` for who may read it).

Every search needs ``Authorization: Bearer <key>`` with a key of that tenant
(``ragindex keys create``). A missing, wrong, revoked or other tenant's key, and
a tenant that does not exist, all get the same 401, with the same work done
(``store.keys.check``), and before the body is read (``serve.guard``). Bodies,
queries, ``k`` and batches are bounded (413 / 422, with the limit in the message).
What a caller can get wrong is a 4xx with a reason: a query that is not valid
text (a lone surrogate) or a non-finite number is 422; an embedding API that is
down is 503, never a 500.
"""

import contextlib
import hmac
import math
import socket
import threading
import time
from typing import Literal, Optional

import uvicorn
from fastapi import FastAPI, Header, HTTPException, Response, Security
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, Field
from uvicorn.config import STARTUP_FAILURE

from ragindex import arguments
from ragindex.api import Ragindex
from ragindex.errors import ArgumentError, HostedError, ServeError
from ragindex.search.filters import FilterError
from ragindex.search.searcher import tenant_mode
from ragindex.serve.guard import MAX_BODY_BYTES, Guard, bearer
from ragindex.store import keys
from ragindex.store.manifests import GenerationError

MAX_QUERY_CHARS = 2000
MAX_K = 100
MAX_BATCH = 64


class SearchRequest(BaseModel):
    query: str = Field(description=f"The question or keywords (at most {MAX_QUERY_CHARS} characters).")
    k: int = Field(5, ge=1, le=MAX_K, description=f"Hits to return, 1 to {MAX_K}.")
    mode: Optional[Literal["dense", "bm25", "hybrid", "hybrid-ctx"]] = Field(None, description="Default: the tenant's mode.")
    filter: Optional[dict] = Field(None, description='Metadata filter, e.g. {"team": "search", "year": {">": 2020}}.')


class BatchRequest(BaseModel):
    queries: list[str] = Field(description=f"Up to {MAX_BATCH} queries, each at most {MAX_QUERY_CHARS} characters.")
    k: int = Field(5, ge=1, le=MAX_K)
    mode: Optional[Literal["dense", "bm25", "hybrid", "hybrid-ctx"]] = None
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


def json_safe(value):
    """``value`` (a validation error's details) with what JSON cannot carry made printable: NaN and infinities
    as their names, lone surrogates escaped; a 422 about a NaN must not itself fail to render (it was a 500)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {json_safe(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def create_app(rx: Ragindex, *, max_body_bytes: int = MAX_BODY_BYTES, metrics_token: Optional[str] = None,
               metrics_tenant_labels: bool = False):
    """The FastAPI application over ``rx`` (its store, its model).

    ``max_body_bytes`` bounds a request body (413 beyond). ``/metrics`` answers only
    ``Authorization: Bearer <metrics_token>`` (401 otherwise); without a token it is
    off and answers 404, so a deployment never publishes it by accident. Its series
    carry no tenant name and no generation id unless ``metrics_tenant_labels``: then
    requests are counted per tenant too and ``ragindex_generation_served`` shows the
    generation each tenant is served from.
    """
    registry = CollectorRegistry()
    by_tenant = ["tenant"] if metrics_tenant_labels else []
    requests = Counter("ragindex_requests_total", "Search requests by mode and HTTP status (and tenant, if configured)",
                       [*by_tenant, "mode", "status"], registry=registry)
    latency = Histogram("ragindex_request_seconds", "Search latency (model forward pass included)", ["mode"],
                        buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5), registry=registry)
    switches = Counter("ragindex_generation_switches_total", "Times a tenant's served generation changed (promotions "
                       "picked up)", registry=registry)
    served = (Gauge("ragindex_generation_served", "1 for the generation each tenant is served from", ["tenant", "generation"],
                    registry=registry) if metrics_tenant_labels else None)
    state = {"ready": False, "served": {}}
    lock = threading.Lock()

    def count(tenant: str, mode: str, status: int) -> None:
        requests.labels(*([tenant] if metrics_tenant_labels else []), mode, str(status)).inc()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        try:
            rx.embedder_for(None)  # load the default model before the first request
        except Exception as exc:
            app.state.failed = exc  # ``serve`` raises it once uvicorn has stopped (its own exit code would be 3)
            raise
        state["ready"] = True
        yield

    app = FastAPI(title="ragindex", version="1", lifespan=lifespan,
                  description="Search a tenant's live index: dense, bm25, hybrid or hybrid-ctx, with metadata filters.")
    app.state.failed = None

    def authorized(tenant: str, authorization: Optional[str]) -> bool:
        # The same answer, and the same work, for a wrong key and for a tenant that does not exist (or an invalid name).
        return keys.check(rx.store, tenant, bearer(authorization))

    app.add_middleware(Guard, authorized=authorized, max_body=max_body_bytes,
                       refused=lambda status: count("-", "-", status))
    key_doc = [Security(HTTPBearer(auto_error=False, description="A key of the tenant (`ragindex keys create`), "
                                   "checked before the body is read"))]

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": json_safe(jsonable_encoder(exc.errors()))}, status_code=422)

    def bounded(queries: list[str], single: bool = False) -> None:
        for q in queries:
            if len(q) > MAX_QUERY_CHARS:
                raise HTTPException(413, f"query of {len(q)} characters; the limit is {MAX_QUERY_CHARS}")
        try:  # not blank, and valid text: JSON may carry a lone surrogate, which no model can read (it was a 500)
            if single:
                arguments.query(queries[0])
            else:
                arguments.queries(queries)
        except ArgumentError as exc:
            raise HTTPException(422, str(exc)) from None

    def run(tenant: str, queries: list[str], k: int, mode: Optional[str], flt: Optional[dict]):

        t0 = time.perf_counter()
        handle = rx.tenant(tenant)
        try:
            used = handle_mode(handle, mode)
            results = handle.search_many(queries, k=k, mode=used, filter=flt)
        except (FilterError, ArgumentError) as exc:
            count(tenant, mode or "-", 422)
            raise HTTPException(422, str(exc)) from None
        except GenerationError as exc:
            count(tenant, mode or "-", 503)
            raise HTTPException(503, str(exc)) from None
        except HostedError as exc:  # the tenant's embedding API is down or refuses: the query cannot be embedded now
            count(tenant, mode or "-", 503)
            raise HTTPException(503, f"the embedding API is unavailable; retry later ({exc})") from None
        found = [h.generation for row in results for h in row]
        gen = found[0] if found else rx.searcher(tenant, needs_model=used != "bm25").generation(tenant).gen_id
        latency.labels(used).observe(time.perf_counter() - t0)
        count(tenant, used, 200)
        with lock:
            old = state["served"].get(tenant)
            if old != gen:
                state["served"][tenant] = gen
                switches.inc()
                if served is not None:
                    if old is not None:
                        served.remove(tenant, old)
                    served.labels(tenant, gen).set(1)
        return gen, used, [[HitOut(**{k: v for k, v in h.to_dict().items() if k != "generation"}) for h in row] for row in results]

    def handle_mode(handle, mode: Optional[str]) -> str:

        return mode or tenant_mode(handle.settings)

    @app.post("/v1/tenants/{tenant}/search", response_model=SearchResponse, dependencies=key_doc)
    def search(body: SearchRequest, tenant: str) -> SearchResponse:
        bounded([body.query], single=True)
        gen, mode, rows = run(tenant, [body.query], body.k, body.mode, body.filter)
        return SearchResponse(tenant=tenant, generation=gen, mode=mode, hits=rows[0])

    @app.post("/v1/tenants/{tenant}/search/batch", response_model=BatchResponse, dependencies=key_doc)
    def search_batch(body: BatchRequest, tenant: str) -> BatchResponse:
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

    @app.get("/metrics", include_in_schema=False)
    def metrics(authorization: Optional[str] = Header(None)) -> Response:
        if not metrics_token:
            raise HTTPException(404, "metrics are off; start `ragindex serve` with --metrics-token or $RAGINDEX_METRICS_TOKEN")
        if not hmac.compare_digest((bearer(authorization) or "").encode(), metrics_token.encode()):
            raise HTTPException(401, "missing or invalid metrics token", headers={"WWW-Authenticate": "Bearer"})
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` and listening, or ServeError with the reason (a port in use, an address
    this machine does not have, a name that does not resolve): exit 1, not uvicorn's 3, which the CLI means
    "over budget"."""
    sock = None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a restart need not wait
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {(exc.strerror or str(exc)).lower()}") from None
    return sock


def serve(rx: Ragindex, host: str = "127.0.0.1", port: int = 8080, log_level: str = "warning", *,
          sock: Optional[socket.socket] = None, **options) -> None:
    """Run the service until SIGINT/SIGTERM; requests in flight finish before it exits.

    ``sock``: a socket from ``listen`` (else one is made for ``host:port``); ``options`` go to ``create_app``.
    A model that fails to load is raised here, where uvicorn would exit 3 (the CLI's "over budget"), so
    the CLI gives it its own message and exit code.
    """
    sock = sock or listen(host, port)
    app = create_app(rx, **options)
    try:
        uvicorn.Server(uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=30)).run(sockets=[sock])
    except SystemExit as exc:
        if app.state.failed is not None:
            raise app.state.failed from None
        if exc.code == STARTUP_FAILURE:
            raise ServeError(f"the service on {host}:{port} did not start; the log above says why") from None
        raise
