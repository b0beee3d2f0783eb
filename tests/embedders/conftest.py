"""The fake OpenAI-compatible server (``api``) and a small corpus (``corpus``): see tests/support/hosted.py."""

from tests.support.hosted import api, corpus  # noqa: F401  (fixtures)
