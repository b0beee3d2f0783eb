"""``sentence``: pack whole sentences into chunks of at most ``size`` tokens.

Sentences end at ``.``, ``!``, ``?`` (and their CJK forms) followed by
whitespace, or at a blank line; closing quotes and brackets right after the mark
stay with the sentence. The size is checked on the exact count of each chunk's
text, so chunks break between sentences. A sentence longer than the size is cut
into token windows. ``overlap`` repeats trailing sentences worth at most that
many tokens at the start of the next chunk.
"""

from __future__ import annotations

import re

from ragindex.chunkers.base import Span, fit_span, strip_span

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
        sents = sentences(text)
        counts = [self.tok.count(text[s:e]) for s, e in sents]
        out: list[Span] = []
        first = 0  # first sentence of the next chunk (< new when it repeats overlap)
        new = 0  # first sentence that is in no chunk yet
        while new < len(sents):
            if counts[new] > self.size:
                out.extend(fit_span(text, *sents[new], self.size, self.tok))
                new += 1
                first = new
                continue
            # Pack whole sentences while the summed counts fit ...
            end = new + 1
            total = sum(counts[first:end])
            while end < len(sents) and total + counts[end] <= self.size:
                total += counts[end]
                end += 1
            # ... then make sure the joined text really fits. The sum undercounts:
            # the text between sentences costs tokens too (cl100k encodes "\n\n"
            # and runs of spaces). Before, fit_span re-cut such a group in
            # mid-sentence, and with overlap the next chunk then started before the
            # re-cut tail (spans out of order). Give back whole sentences instead:
            # new ones from the end, then repeated ones from the front.
            while (m := self.tok.count(text[sents[first][0] : sents[end - 1][1]])) > self.size:
                if end - 1 > new:
                    end -= 1
                elif first < new:
                    first += 1
                else:  # a lone sentence: m == counts[new] <= size, cannot happen
                    break
            out.append(Span(sents[first][0], sents[end - 1][1], m))
            chunk_first = first
            new = first = end
            if self.overlap and end < len(sents) and counts[end] <= self.size:
                # Repeat trailing sentences worth at most `overlap` tokens that leave
                # room for the next one. (The old test added the next sentence on
                # both sides, `kept + g + n > min(overlap, size - n)`, so it repeated
                # nothing unless the next sentence was shorter than the overlap.)
                room = min(self.overlap, self.size - counts[end])
                kept = 0
                while first - 1 > chunk_first and kept + counts[first - 1] <= room:
                    first -= 1
                    kept += counts[first]
        return out
