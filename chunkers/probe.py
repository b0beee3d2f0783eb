"""A fixed text every chunker is run on to fingerprint its behaviour.

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
