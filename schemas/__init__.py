"""Versioned chunker schemas (TOML files + pydantic models + lock file) and Arrow table schemas."""

from ragindex.schemas.chunker import ChunkerSpec, SchemaError, SchemaFile, parse_ref
from ragindex.schemas.registry import SchemaRegistry

__all__ = ["ChunkerSpec", "SchemaError", "SchemaFile", "SchemaRegistry", "parse_ref"]
