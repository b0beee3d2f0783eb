"""The harness that exercises ragindex from outside: shared by the benchmarks and the tests.

None of it is part of the installed package. ``devserver`` starts and stops
`dagster dev`; ``loadtest`` searches while a reindex promotes; ``fake_openai`` is
an OpenAI-compatible embeddings server over real HTTP; ``data`` reads the shared
evaluation data. The benchmarks never import ``tests``; the tests import this.
"""
