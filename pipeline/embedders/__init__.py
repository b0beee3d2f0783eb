"""Embedding models behind one interface: ``local`` (sentence-transformers, the hash test model),
``hosted`` (OpenAI-compatible APIs, with ``limits``: packing, rate limits, retries), and
``registry``, the one place that decides which model a tenant uses and builds it once per process.
"""
