"""The fake OpenAI-compatible server (``api``): see tests/support/hosted.py."""

from tests.support.hosted import api  # noqa: F401  (a fixture)
