"""A tenant's files and the one owner of every write to them.

``paths`` validates tenant names and derives every path; ``tenants`` holds settings
(the pin comes from the live manifest); ``writer.TenantWriter`` holds the tenant's
lock and is the only way to change it. Index state: ``segments`` (immutable, with a
``lexical`` BM25 index each), ``manifests`` (generations and the CURRENT pointer),
``cache`` (embeddings and the cost ledger), ``generations``/``merge``/``maintenance``
(rollback, gc, compaction). ``keys`` (API keys, their own lock) and ``offboard``
(removing a tenant) complete it.
"""
