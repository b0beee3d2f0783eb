"""Stages 2 to 4: chunk, plan and embed, commit; and the one entry point that runs them.

``run.TenantRun`` / ``run.reindex`` sequence the stages under the tenant's writer
(``store.writer``) with ``options.RunOptions``; ``chunk`` cuts documents by a schema,
``plan`` and ``prices`` know the cost before anything is embedded, ``embed`` fills
the tenant's cache under one ledger run, ``commit`` writes a segment and a
generation and promotes it when ``checks`` pass. ``migrate`` moves a tenant to
another schema; ``repair`` fixes damage without re-embedding.
"""
