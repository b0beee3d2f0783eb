"""``sentence``: pack whole sentences into chunks of at most ``size`` tokens.

Sentences end at ``.``, ``!``, ``?`` (and their CJK forms) followed by
whitespace, or at a blank line. A sentence longer than the size is cut into
token windows. ``overlap`` repeats trailing sentences worth at most that many
tokens at the start of the next chunk.
"""

from __future__ import annotations

import re

from chunkers.base import Span, fit_span, strip_span

# Closing quotes/brackets after the end mark belong to the sentence (group
# "close"); only the whitespace after them is the boundary.
_BOUNDARY = re.compile(r"(?<=[.!?。！？])(?P<close>[\"')\]]*)\s+|\n\s*\n")


def sentences(text: str) -> list[tuple[int, int]]:
    """Non-empty, whitespace-stripped sentence spans in order."""
    out = []
    pos = 0
    for m in _BOUNDARY.finditer(text):
        # The sentence ends after its closers: ending it at m.start() dropped them
        # (`(see Fig. 2.) Next` lost the ")"), and a dropped closer at a chunk
        # boundary was in no chunk at all.
        end = m.start() if m.group("close") is None else m.end("close")
        s, e = strip_span(text, pos, end)
        if s < e:
            out.append((s, e))
        pos = m.end()
    s, e = strip_span(text, pos, len(text))
    if s < e:
        out.append((s, e))
    return out


class SentenceChunker:
    IMPL_VERSION = 1

    def __init__(self, spec, tokenizer) -> None:
        self.size = spec.size
        self.overlap = spec.overlap
        self.tok = tokenizer

    def chunk(self, text: str) -> list[Span]:
        out: list[Span] = []
        group: list[tuple[int, int, int]] = []  # (start, end, tokens) of packed sentences

        def flush() -> None:
            if group:
                out.extend(fit_span(text, group[0][0], group[-1][1], self.size, self.tok))

        for s, e in sentences(text):
            n = self.tok.count(text[s:e])
            if n > self.size:
                flush()
                group = []
                out.extend(fit_span(text, s, e, self.size, self.tok))
                continue
            # Pack on the exact count of the joined text, not on the sum of the
            # sentence counts: the text between sentences costs tokens too (cl100k
            # encodes "\n\n" and runs of spaces), so the sum undercounts. Packing on
            # the sum made fit_span re-cut groups in mid-sentence, and with overlap
            # the next chunk then started before the re-cut tail (spans out of order).
            if group and self.tok.count(text[group[0][0] : e]) > self.size:
                flush()
                keep: list[tuple[int, int, int]] = []
                if self.overlap:
                    # Trailing sentences worth at most `overlap` tokens that still
                    # leave room for this one. (The old test added n on both sides,
                    # `kept + g + n > min(overlap, size - n)`, so it kept nothing
                    # unless the new sentence was shorter than the overlap.)
                    for g in reversed(group):
                        if sum(k[2] for k in keep) + g[2] > min(self.overlap, self.size - n):
                            break
                        keep.insert(0, g)
                    # The same seam cost can push kept + this sentence over the size.
                    while keep and self.tok.count(text[keep[0][0] : e]) > self.size:
                        keep.pop(0)
                group = keep
            group.append((s, e, n))
        flush()
        return out
