"""Issue 13, chunkers: a pathological input costs linear work, not one tokenizer call per character."""

from __future__ import annotations


def test_a_huge_line_without_whitespace_chunks_in_linear_work():
    """The recursive chunker's last resort (split into characters) counts each distinct character once."""
    from ragindex.chunkers import build_chunker
    from ragindex.chunkers.tokenizers import get_tokenizer
    from ragindex.schemas import SchemaRegistry

    spec = SchemaRegistry().get("default@1").spec
    chunker = build_chunker(spec)
    tok = get_tokenizer(spec.tokenizer)
    calls = {"n": 0}
    real_count = tok.count

    def counting(text):
        calls["n"] += 1
        return real_count(text)

    chunker.tok = type("T", (), {"count": staticmethod(counting), "starts": tok.starts, "name": tok.name})()
    text = ("abcdefghij" * 20_000)  # 200,000 characters, no separator at all
    spans = chunker.chunk(text)
    assert "".join(text[s.start:s.end] for s in spans) == text
    assert calls["n"] < len(text) / 50  # was one call per character
