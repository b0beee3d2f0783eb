"""``ragindex serve``: a warm HTTP search service (FastAPI) over the Python API, with per-tenant keys."""
