"""Typed, frozen chunker schemas and their fingerprints.

A schema file ``schemas/chunkers/<name>.v<version>.toml`` holds one chunker
spec. Its identity is ``NAME@VERSION``; its fingerprint is the sha256 of the
canonical JSON of the *validated* spec plus the kind's implementation id, so
comments, key order and formatting in the TOML do not matter, while any change
to what the chunker produces does.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from ragindex.chunkers import implementation_id, needs_embeddings
from ragindex.chunkers.context import format_probe
from ragindex.chunkers.tokenizers import TOKENIZER_NAMES

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
FILE_RE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9_-]{0,62})\.v(?P<version>[1-9][0-9]{0,5})\.toml$")

# The separator hierarchy of the chunking study (../shared/data/chroma_chunking/METRICS.md).
STUDY_SEPARATORS = ("\n\n", "\n", ".", "?", "!", " ", "")

Tokenizer = Literal[TOKENIZER_NAMES]  # type: ignore[valid-type]


class SchemaError(ValueError):
    """A schema file or reference that cannot be used; the message names the field."""


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    description: str = ""
    tokenizer: Tokenizer = Field(description="cl100k_base or the embedding model's own tokenizer")
    size: int = Field(ge=16, le=8192, description="maximum chunk size in tokens")
    overlap: int = Field(default=0, ge=0, description="tokens repeated between neighbours")
    context_headers: bool = Field(
        default=False,
        description="embed each chunk below a header of its document's title and heading path; "
                    "the span, and the text search returns, stay the chunk itself")

    @model_validator(mode="after")
    def _overlap_below_size(self):
        if self.overlap >= self.size:
            raise ValueError(f"overlap ({self.overlap}) must be smaller than size ({self.size})")
        return self


class TokenSpec(_Spec):
    kind: Literal["token"]


class RecursiveSpec(_Spec):
    kind: Literal["recursive"]
    separators: tuple[str, ...] = STUDY_SEPARATORS


class MarkdownSpec(_Spec):
    kind: Literal["markdown"]
    heading_levels: tuple[int, ...] = Field(default=(1, 2, 3), min_length=1)
    separators: tuple[str, ...] = STUDY_SEPARATORS

    @model_validator(mode="after")
    def _levels(self):
        if any(not 1 <= h <= 6 for h in self.heading_levels):
            raise ValueError("heading_levels must be between 1 and 6")
        return self


class SentenceSpec(_Spec):
    kind: Literal["sentence"]


class ClusterSpec(_Spec):
    """Semantic clustering of ``piece_size``-token pieces into chunks of at most ``size`` tokens."""

    kind: Literal["cluster"]
    piece_size: int = Field(default=50, ge=8, le=1024, description="tokens per piece that the clustering joins")
    separators: tuple[str, ...] = STUDY_SEPARATORS

    @model_validator(mode="after")
    def _pieces(self):
        if self.overlap:
            raise ValueError("the cluster kind has no overlap (chunks are runs of whole pieces)")
        if self.piece_size > self.size:
            raise ValueError(f"piece_size ({self.piece_size}) must not exceed size ({self.size})")
        return self


ChunkerSpec = Annotated[Union[TokenSpec, RecursiveSpec, MarkdownSpec, SentenceSpec, ClusterSpec], Field(discriminator="kind")]
_ADAPTER: TypeAdapter = TypeAdapter(ChunkerSpec)


def parse_ref(ref: str) -> tuple[str, int]:
    """Split ``NAME@VERSION`` into its parts, or raise SchemaError."""
    name, sep, version = ref.partition("@")
    if not sep or not NAME_RE.match(name) or not version.isdigit() or int(version) < 1:
        raise SchemaError(f"{ref!r} is not a schema reference; expected NAME@VERSION, e.g. default@1")
    return name, int(version)


class SchemaFile(BaseModel):
    """One published or candidate schema: its identity, spec and source path."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: int
    spec: ChunkerSpec
    path: Path | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def canonical_json(self) -> str:
        """The spec as canonical JSON (sorted keys, no whitespace): what is fingerprinted."""

        spec = self.spec.model_dump(mode="json")
        body = {"spec": spec, "implementation": implementation_id(self.spec)}
        if spec["context_headers"]:

            body["context_format"] = format_probe()
        else:
            del spec["context_headers"]  # added later: schemas without it keep the fingerprints they were published with
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def fingerprint(self) -> str:
        """sha256 of :meth:`canonical_json`; the chunker_fp of every chunk it makes."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()

    @property
    def needs_embeddings(self) -> bool:
        """Whether chunks depend on an embedder too (the ``cluster`` kind)."""

        return needs_embeddings(self.spec)

    def chunk_fingerprint(self, embedder_fp: str) -> str:
        """The chunker_fp of the chunks this schema makes with embedder ``embedder_fp``.

        For most kinds it is :meth:`fingerprint`. A kind that cuts on embeddings
        makes other chunks with another model, so its chunks' fingerprint is the
        schema's combined with the embedder's: a model change re-chunks, and two
        tenants' chunks of one schema under different models never share an id.
        """
        fp = self.fingerprint()
        if not self.needs_embeddings:
            return fp
        return hashlib.sha256(f"{fp}|embedder:{embedder_fp}".encode("utf-8")).hexdigest()

    @classmethod
    def load(cls, path: Path) -> "SchemaFile":
        """Read and validate a schema file; errors name the file and the field."""
        m = FILE_RE.match(path.name)
        if not m:
            raise SchemaError(f"{path}: schema files are named <name>.v<version>.toml, e.g. default.v1.toml")
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise SchemaError(f"{path}: cannot read schema: {exc}") from exc
        try:
            spec = _ADAPTER.validate_python(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'] if p not in ('token', 'recursive', 'markdown', 'sentence', 'cluster')) or 'schema'}: {e['msg']}"
                for e in exc.errors()
            )
            raise SchemaError(f"{path}: invalid schema: {problems}") from None
        return cls(name=m["name"], version=int(m["version"]), spec=spec, path=path)
