"""Package data, not code: the retrieval gate's recorded baselines, installed as ``ragindex.baselines``."""
