"""``token``: fixed windows of ``size`` tokens; each starts ``overlap`` tokens before the last ended."""

from __future__ import annotations

from ragindex.chunkers.base import Span, fit_span, strip_span


class TokenChunker:
    IMPL_VERSION = 1

    def __init__(self, spec, tokenizer) -> None:
        self.size = spec.size
        self.overlap = spec.overlap
        self.tok = tokenizer

    def chunk(self, text: str) -> list[Span]:
        starts = self.tok.starts(text)
        n = len(starts)
        if n == 0:
            # No tokens at all, yet the text may hold non-whitespace that the
            # tokenizer drops (MiniLM's normaliser deletes NUL, U+FFFD, zero-width
            # and combining characters): keep it as one 0-token chunk rather than
            # losing it. Whitespace-only text still gives no chunk.
            return fit_span(text, 0, len(text), self.size, self.tok)
        # The first window starts at offset 0, not at the first token: characters
        # before it that make no token (same cases as above) would otherwise be in
        # no chunk at all. Leading whitespace is stripped as before.
        starts = [0] + starts[1:]
        bound = lambda j: starts[j] if j < n else len(text)  # noqa: E731
        out: list[Span] = []
        i = 0
        while i < n:
            j = min(i + self.size, n)
            # The window's substring can re-tokenise longer at its edges (BPE
            # merges differ at a cut); give back tokens until it really fits.
            while True:
                s, e = strip_span(text, starts[i], bound(j))
                count = self.tok.count(text[s:e]) if s < e else 0
                if count <= self.size or j - i <= 1:
                    break
                j -= 1
            if s < e:
                if count <= self.size:
                    out.append(Span(s, e, count))
                else:  # one token that re-tokenises long: only possible for tiny sizes
                    out.extend(fit_span(text, s, e, self.size, self.tok))
            if j >= n:
                break
            i = max(i + 1, j - self.overlap)
        return out
