"""Stage 1, documents: reading a tenant's source and finding what changed.

``sources`` reads a folder of text files, a ``.jsonl`` or a ``.parquet`` file, with
a reason for every input it skips; ``changes`` compares the source with the live
generation (stat first, content hash only where the stat moved) and yields the
change set: new, changed, deleted and unchanged documents. Nothing here writes.
"""
