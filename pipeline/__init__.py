"""ragindex pipeline: the stages (sources, documents, chunks, embeddings, index, search,
cost, evaluation) as plain functions, plus the CLI and the Dagster code location that
call them."""
