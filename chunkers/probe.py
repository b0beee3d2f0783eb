"""A fixed text (and, for kinds that need them, fixed embeddings) to fingerprint behaviour.

It mixes headings, paragraphs, long sentences, lists, code, CRLF-free newlines and
non-Latin scripts so that most changes to splitting logic change some offset.
Never edit it: every published fingerprint depends on it.
"""

_PARA = (
    "Retrieval quality depends on where a document is cut. A cut in the middle of a "
    "sentence separates a claim from its evidence; a chunk that is too long dilutes the "
    "one sentence a question needs. Is that a trade-off? Yes! It is measured, not guessed. "
)

PROBE_TEXT = (
    "# Probe document\n\n"
    + _PARA * 3
    + "\n\n## Lists and code\n\n- first item\n- second item, a little longer than the first\n"
    + "```\nfor i in range(10):\n    print(i)\n```\n\n"
    + "### Deep heading\n\n"
    + " ".join(f"word{i}" for i in range(400))
    + "\n\n## Unicode\n\nGrüße aus Köln. 東京は大きい都市です。Ελληνικά κείμενα εδώ. 😀 emoji 👍🏽 ok.\n"
    + ("Sentence number %d ends here. " * 60) % tuple(range(60))
    + "\n"
)


def probe_embed(texts):
    """Deterministic stand-in embeddings (a numpy array): hashed bags of lower-cased words, 64 dims.

    Kinds that cluster on embeddings are fingerprinted on these, so a change to
    their own logic changes the behaviour hash without loading any model; the
    real embedder's identity enters the chunks' fingerprint separately.
    """
    import hashlib

    import numpy as np

    out = np.zeros((len(texts), 64))
    for i, t in enumerate(texts):
        for w in t.lower().split():
            h = hashlib.sha256(w.encode("utf-8")).digest()
            out[i, h[0] % 64] += 1.0 if h[1] % 2 else -1.0
    return out
