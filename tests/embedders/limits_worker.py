"""One process of the shared-limit tests: embeds its own texts through the hosted embedder, from a given wall time.

``python -m tests.embedders.limits_worker NAME N_TEXTS START_AT`` (the endpoint, key and limits come from the
environment, as for any run); prints one JSON line: what it sent and how long it waited for the shared bucket.
Every text starts with ``NAME``, so the server's records say which process sent what.
"""

from __future__ import annotations

import json
import random
import sys
import time

from ragindex.embedders.registry import EmbedderConfig

WORDS = ("river", "stone", "light", "paper", "window", "garden", "table", "music", "winter", "market",
         "cloud", "engine", "forest", "letter", "doctor", "island", "bridge", "summer", "number", "camera",
         "silver", "orange", "planet", "school", "coffee", "rabbit", "yellow", "castle", "pocket")


def texts(name: str, n: int, words: int = 80) -> list[str]:
    """``n`` distinct texts of about ``words`` + 5 cl100k tokens each."""
    rng = random.Random(name)
    return [f"{name} text {i}: " + " ".join(rng.choice(WORDS) for _ in range(words)) for i in range(n)]


def main() -> None:
    name, n, start_at = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    embedder = EmbedderConfig("openai:text-embedding-3-small", dimensions=64).build()
    items = texts(name, n)
    time.sleep(max(0.0, start_at - time.time()))
    t0 = time.time()
    vectors = embedder.embed(items)
    print(json.dumps({"name": name, "texts": int(vectors.shape[0]), "requests": embedder.stats["requests"],
                      "retries": embedder.stats["retries"], "waited_s": round(embedder.limiter.waited_s, 3),
                      "started": t0, "ended": time.time(), "bucket": embedder.limiter.bucket.where}))


if __name__ == "__main__":
    main()
