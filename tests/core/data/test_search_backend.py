"""The Whoosh backend on its own: queries, scoping, highlighting, and the library bugs it
works around (stale refreshed searchers, matcher replacement that ranks and counts wrongly)."""

from __future__ import annotations

import random

import pytest

from bastion.search.backend import Document, Scope
from bastion.search.whoosh_backend import (
    EXACT_UP_TO,
    RANK_UP_TO,
    WhooshBackend,
    _plan,
    _query,
    _run,
    all_field,
    text_field,
    words,
)

FIELDS = frozenset({"first_name", "last_name", "title"})
VOCABULARY = [
    "ada",
    "bob",
    "carol",
    "dave",
    "eve",
    "lovelace",
    "smith",
    "jones",
    "engineer",
    "manager",
    "chief",
    "officer",
    "lovely",
    "lover",
    "love",
    "müller",
]


def contact(record_id: int, owner: int | None, **texts: str) -> Document:
    return Document("contacts", record_id, owner, texts, FIELDS)


@pytest.fixture
def backend(tmp_path):
    return WhooshBackend(tmp_path / "index")


def ids(backend: WhooshBackend, text: str, *scopes: Scope, limit: int = 10) -> list[int]:
    hits = backend.search(text, scopes, limit=limit)
    return [i for group in hits.groups for i in group.ids]


def test_an_empty_or_missing_index_finds_nothing(backend):
    assert ids(backend, "anything", Scope("contacts", ("last_name",))) == []
    assert backend.status().documents == 0


def test_words_prefixes_fields_and_owners(backend):
    backend.index_documents(
        [
            contact(1, 7, first_name="Ada", last_name="Lovelace", title="Countess"),
            contact(2, 8, first_name="Charles", last_name="Babbage", title="Engineer"),
            contact(3, None, first_name="Ada", last_name="Müller"),
        ]
    )
    every = Scope("contacts", tuple(sorted(FIELDS)))
    assert ids(backend, "lovelace", every) == [1]
    assert ids(backend, "LOVEL", every) == [1]
    assert ids(backend, "muller", every) == [3]  # accents folded
    assert sorted(ids(backend, "ada", every)) == [1, 3]
    assert ids(backend, "ada countess", every) == [1]
    assert ids(backend, "countess", Scope("contacts", ("first_name", "last_name"))) == []
    assert ids(backend, "ada", Scope("contacts", tuple(FIELDS), frozenset({7}))) == [1]
    # A record without an owner is out of every scope that names owners.
    assert ids(backend, "ada", Scope("contacts", tuple(FIELDS), frozenset({8}))) == []
    assert ids(backend, "ada", Scope("contacts", tuple(FIELDS), frozenset())) == []


def test_updates_and_deletions_are_seen_by_a_reused_searcher(backend):
    backend.index_documents([contact(1, 1, last_name="Alpha"), contact(2, 1, last_name="Beta")])
    scope = Scope("contacts", ("last_name",))
    assert ids(backend, "alpha", scope) == [1]  # this thread's searcher is now open
    backend.index_documents([contact(1, 1, last_name="Gamma")], ["contacts:2"])
    assert ids(backend, "alpha", scope) == []
    assert ids(backend, "beta", scope) == []
    assert ids(backend, "gamma", scope) == [1]
    backend.rebuild([[contact(5, 1, last_name="Delta")]])
    assert ids(backend, "gamma", scope) == []
    assert ids(backend, "delta", scope) == [5]
    assert backend.status().documents == 1


def test_the_combined_field_is_skipped_when_it_may_hold_an_unreadable_field(backend):
    backend.index_documents([contact(1, 1, last_name="Smith", title="Zebra keeper")])
    assert ids(backend, "zebra", Scope("contacts", tuple(sorted(FIELDS)))) == [1]
    assert ids(backend, "zebra", Scope("contacts", ("first_name", "last_name"))) == []
    assert ids(backend, "smith", Scope("contacts", ("first_name", "last_name"))) == [1]


def test_highlight_escapes_everything_but_its_marks(backend):
    html = backend.highlight("<b>Tom</b> & Jerry's", {"tom", "jerry"})
    assert html == "&lt;b&gt;<mark>Tom</mark>&lt;/b&gt; &amp; <mark>Jerry</mark>&#39;s"
    assert backend.highlight("nothing here", {"tom"}) is None
    long = "word " * 100 + "needle " + "word " * 100
    snippet = backend.highlight(long, {"needle"})
    assert "<mark>needle</mark>" in snippet and len(snippet) < 220
    assert snippet.startswith("… ") and snippet.endswith(" …")


def test_ranking_and_counts_match_scoring_every_document(backend):
    """Whoosh's shortcuts (block skipping; not its matcher replacement, which dropped
    sub-queries and miscounted) and the owner filter must rank and count exactly like
    scoring every document and filtering owners by hand."""
    rng = random.Random(4)
    documents = [
        contact(
            n,
            rng.randint(1, 6),
            first_name=rng.choice(VOCABULARY),
            last_name=rng.choice(VOCABULARY),
            title=" ".join(rng.sample(VOCABULARY, 3)),
        )
        for n in range(1, 1201)
    ]
    for start in range(0, len(documents), 200):
        backend.index_documents(documents[start : start + 200])
    backend.delete_documents([f"contacts:{n}" for n in range(1, 1201, 5)])
    searcher = backend._searcher()
    for _ in range(150):
        owners = None if rng.random() < 0.3 else frozenset(rng.sample(range(1, 7), 2))
        scope = Scope("contacts", tuple(rng.sample(sorted(FIELDS), rng.randint(1, 3))), owners)
        wanted = words(" ".join(rng.sample(VOCABULARY, rng.randint(1, 2))))
        if rng.random() < 0.5:
            names = [all_field("contacts")]
        else:
            names = [text_field("contacts", name) for name in scope.fields]
        plan = _plan(searcher.reader(), "contacts", names, wanted)
        limit = rng.choice([1, 3, 10])
        everything = searcher.search(_query(plan, owners), limit=None)
        scores = {int(hit["key"].partition(":")[2]): round(hit.score, 6) for hit in everything}
        unscoped = searcher.search(_query(plan, None), limit=None)
        expected = {int(hit["key"].partition(":")[2]) for hit in unscoped}
        if owners is not None:
            expected = {n for n in expected if documents[n - 1].owner in owners}
        assert set(scores) == expected
        assert not any(number % 5 == 1 for number in scores)  # deleted
        for how in ("scored", "skipping", "unranked"):
            plan.estimate = {"scored": 0, "skipping": EXACT_UP_TO + 1}.get(how, RANK_UP_TO + 1)
            found = _run(searcher, plan, scope, limit)
            if not scores:
                assert found is None
                continue
            assert found.total == len(scores) and found.exact
            if how == "unranked":  # the first matches in index order
                assert found.ids == sorted(scores)[:limit]
                continue
            best = sorted(scores.values(), reverse=True)[:limit]
            assert sorted((scores[i] for i in found.ids), reverse=True) == best


def test_counting_stops_at_its_caps(backend, monkeypatch):
    from bastion.search import whoosh_backend

    backend.index_documents([contact(n, n % 2, last_name="Same") for n in range(1, 41)])
    scope = Scope("contacts", ("last_name",))
    assert backend.search("same", [scope], limit=5).groups[0].total == 40
    monkeypatch.setattr(whoosh_backend, "COUNT_CAP", 10)
    for estimate_limits in ({}, {"EXACT_UP_TO": 0}, {"RANK_UP_TO": 0}):
        for name, value in estimate_limits.items():
            monkeypatch.setattr(whoosh_backend, name, value)
        group = backend.search("same", [scope], limit=5).groups[0]
        assert (group.total, group.exact, len(group.ids)) == (10, False, 5)
    # Unranked: at most BROAD_BUDGET candidates are looked at, even for a narrow scope.
    monkeypatch.setattr(whoosh_backend, "BROAD_BUDGET", 20)
    group = backend.search("same", [Scope("contacts", ("last_name",), frozenset({1}))], limit=50)
    assert (group.groups[0].total, group.groups[0].exact) == (10, False)
    assert all(n % 2 == 1 for n in group.groups[0].ids)
