"""Searching one tenant's live generation: ``generation`` loads and scores its segments (deleted
rows skipped, per-segment top-k merged), ``hybrid`` fuses dense and BM25 results, ``filters``
turns a metadata filter into a row mask, and ``searcher.Searcher`` follows CURRENT for a tenant.
"""
