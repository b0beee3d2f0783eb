"""Filter lists are bounded: a huge ``in`` / ``not_in`` list is refused before any row is looked at.

Hardening II, item 10: 200,000 values in one ``in`` list cost 2.8 s of CPU per request.
"""

from __future__ import annotations

import json

import pytest

from ragindex.search.filters import MAX_LIST_VALUES, FilterError, parse
from tests.support.cli import ragindex


def test_lists_up_to_the_bound_are_accepted():
    spec = {"and": [{"team": {"in": list(range(MAX_LIST_VALUES // 2))}},
                    {"year": {"not_in": list(range(MAX_LIST_VALUES - MAX_LIST_VALUES // 2))}}]}
    assert parse(spec) == spec


@pytest.mark.parametrize("spec", [
    {"team": {"in": list(range(200_000))}},  # one huge list
    {"team": {"not_in": ["x"] * (MAX_LIST_VALUES + 1)}},  # one past the bound
    {"or": [{"team": {"in": list(range(MAX_LIST_VALUES))}}, {"year": {"not_in": [1]}}]},  # the bound holds for all lists together
])
def test_longer_lists_are_refused_with_the_limit_in_the_message(spec):
    with pytest.raises(FilterError, match=f"at most {MAX_LIST_VALUES} values"):
        parse(spec)
    with pytest.raises(FilterError, match=f"at most {MAX_LIST_VALUES} values"):
        parse(json.dumps(spec))


def test_the_cli_refuses_a_huge_list_with_one_line_and_exit_1(indexed_folder):
    res = ragindex("search", "-t", "acme", "cells", "--mode", "bm25", "--filter",
                   json.dumps({"path": {"in": [f"doc{i}.md" for i in range(5000)]}}))
    assert res.exit_code == 1, res.output
    assert f"error: field 'path': 'in' list of 5000 values; a filter holds at most {MAX_LIST_VALUES}" in res.output
    assert "bug" not in res.output and len(res.output.strip().splitlines()) == 1
