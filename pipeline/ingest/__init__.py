"""Stage 1, documents: reading a tenant's source and finding what changed.

``documents`` says what a document is and validates every record the same way;
``sources`` reads a folder (text files as they are; PDF, DOCX, PPTX and HTML through
``convert``, one converter module per format, run in a worker pool), a ``.jsonl`` or
a ``.parquet`` file, with a reason for every input it skips; ``changes`` compares
the source with the live generation (stat first, content hash only where the stat
moved) and yields the ``changeset``: new, changed, deleted and unchanged documents.
Nothing here writes.
"""
