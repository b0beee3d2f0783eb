"""Issue 23 (Hardening II), items 13, 22 and 26: the Python API checks what it is given, once, in the library.

A NaN budget, ``k=0``, an empty or undecodable query, ``wait=nan``, an unknown mode
or a missing source is refused with an ArgumentError (a ValueError the CLI maps to
exit 1) before anything is read or written, and the same check serves the CLI and
the HTTP service (``ragindex.arguments``).
"""

from __future__ import annotations

import math

import pytest

from ragindex.api import Budget, Ragindex, RunOptions
from ragindex.errors import EXIT_CODES, ArgumentError
from ragindex.store.manifests import current_id

BAD_NUMBERS = [math.nan, math.inf, -math.inf, -0.01, "0.5", True]


@pytest.fixture
def acme(store, indexed_folder):
    """The indexed tenant ``acme`` through the Python API (hash model)."""
    return Ragindex(home=store.root, model="hash").tenant("acme")


def test_argument_errors_are_value_errors_the_cli_maps_to_exit_1():
    assert issubclass(ArgumentError, ValueError)
    assert [(code, kind) for cls, code, kind in EXIT_CODES if cls is ArgumentError] == [(1, "argument")]


@pytest.mark.parametrize("bad", BAD_NUMBERS)
def test_a_budget_that_would_disable_itself_is_refused_when_it_is_made(bad):
    with pytest.raises(ArgumentError, match="max_cost"):
        Budget(cost_usd=bad)
    with pytest.raises(ArgumentError, match="budget_tokens"):
        Budget(tokens=bad)


@pytest.mark.parametrize("bad", [-1, 2.5, math.nan, True])
def test_budget_tokens_must_be_a_whole_number_not_below_zero(bad):
    with pytest.raises(ArgumentError, match="budget_tokens"):
        Budget(tokens=bad)


def test_a_valid_budget_is_kept_as_given():
    assert Budget(0, 0.0) == Budget(tokens=0, cost_usd=0.0)
    assert Budget(10, 1).cost_usd == 1


@pytest.mark.parametrize("field,bad", [("wait", math.nan), ("wait", -1), ("wait", math.inf), ("quality_tolerance", math.nan),
                                       ("quality_tolerance", -0.5), ("mode", "sql"), ("budget", (1, 2))])
def test_run_options_are_checked_when_they_are_made(field, bad):
    with pytest.raises(ArgumentError, match=field):
        RunOptions(**{field: bad})
    with pytest.raises(ArgumentError, match=field):
        RunOptions().but(**{field: bad})


@pytest.mark.parametrize("kwargs", [{"max_cost": math.nan}, {"max_cost": math.inf}, {"max_cost": -1}, {"budget_tokens": -5},
                                    {"wait": math.nan}, {"mode": "sql"}])
def test_reindex_refuses_a_bad_argument_before_reading_anything(acme, store, kwargs):
    live = current_id(store.paths("acme"))
    with pytest.raises(ArgumentError):
        acme.reindex(**kwargs)
    assert current_id(store.paths("acme")) == live


@pytest.mark.parametrize("k", [0, -1, 2.5, "3", True, 10**9])
def test_search_refuses_a_k_that_is_not_a_positive_whole_number(acme, k):
    with pytest.raises(ArgumentError, match="k"):
        acme.search("cells", k=k)
    with pytest.raises(ArgumentError, match="k"):
        acme.search_many(["cells"], k=k)


@pytest.mark.parametrize("query", ["", "   \n\t", "\udcff\udcfe cells", None, b"cells"])
def test_search_refuses_an_empty_undecodable_or_non_text_query(acme, query):
    with pytest.raises(ArgumentError, match="query"):
        acme.search(query, k=3)
    with pytest.raises(ArgumentError, match="query"):
        acme.search_many(["cells", query], k=3)


def test_search_many_refuses_a_string_for_a_list_and_an_unknown_mode(acme):
    with pytest.raises(ArgumentError, match="queries"):
        acme.search_many("cells", k=3)
    with pytest.raises(ArgumentError, match="mode"):
        acme.search("cells", k=3, mode="sql")


def test_valid_arguments_still_search(acme):
    assert len(acme.search("cells", k=3, mode="bm25")) == 3
    assert [len(r) for r in acme.search_many(["cells", "genes"], k=2, mode="bm25")] == [2, 2]


@pytest.mark.parametrize("wait", [math.nan, math.inf, -1.0])
def test_a_wait_that_would_block_forever_or_mean_nothing_is_refused(acme, store, wait):
    live = current_id(store.paths("acme"))
    for call in (lambda: acme.rollback(wait=wait), lambda: acme.gc(wait=wait), lambda: acme.compact(wait=wait),
                 lambda: acme.verify(repair=True, wait=wait), lambda: acme.remove(wait=wait)):
        with pytest.raises(ArgumentError, match="wait"):
            call()
    assert current_id(store.paths("acme")) == live and acme.exists


def test_add_refuses_an_unknown_mode_and_saves_nothing(store, tmp_path):
    src = tmp_path / "docs"
    src.mkdir()
    t = Ragindex(home=store.root, model="hash").tenant("newco")
    with pytest.raises(ArgumentError, match="mode"):
        t.add(source=src, mode="sql")
    assert not store.paths("newco").settings_file.exists()


def test_add_refuses_a_missing_or_unreadable_kind_of_source_and_saves_nothing(store, tmp_path):
    t = Ragindex(home=store.root, model="hash").tenant("newco")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        t.add(source=tmp_path / "nowhere")
    csv = tmp_path / "table.csv"
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="table.csv"):
        t.add(source=csv)
    assert not store.paths("newco").settings_file.exists()


def test_add_of_a_live_tenant_refuses_an_unknown_mode_before_the_pin_check(acme, store, indexed_folder):
    before = store.paths("acme").settings_file.read_text()
    with pytest.raises(ArgumentError, match="mode"):
        acme.add(source=indexed_folder[0], mode="sql")
    assert store.paths("acme").settings_file.read_text() == before
