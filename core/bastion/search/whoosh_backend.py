"""The embedded search backend: a Whoosh index in ``<data_dir>/search/index``.

Layout of a document: ``key`` ("contacts:5", unique, the only stored value), ``object``,
``owner`` (user id as text, "-" for none) and ``owner_number`` (the same as a per-document
number column, for scope checks), one text field per searchable field named
``t_<object>__<field>`` and the combined ``all_<object>`` with all of them. Nothing else
is stored: snippets are built from values read again through the record service, so the
index never has to hand out text.

The combined field is faster to query, but it holds every searchable field at once. It
is used only when the searcher may read every field it can hold; ``fields.json`` lists,
per object, the fields written into it since that object was last rebuilt (grown before
a commit that adds one, shrunk after a rebuild). A field that was hidden from a role or
stopped being searchable is therefore never matched through it.

Only the holder of the indexer's lock writes (``bastion.search.indexer``); any thread
searches, each with its own searcher, refreshed when the index changed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from markupsafe import escape
from whoosh.analysis import CharsetFilter, LowercaseFilter, RegexTokenizer
from whoosh.collectors import TopCollector
from whoosh.columns import NumericColumn
from whoosh.fields import COLUMN, ID, TEXT, Schema
from whoosh.filedb.filestore import FileStorage
from whoosh.highlight import Formatter, WholeFragmenter, get_text
from whoosh.highlight import highlight as whoosh_highlight
from whoosh.matching import NullMatcher
from whoosh.matching.wrappers import WrappingMatcher
from whoosh.query import And, Or, Query, Term, WrappingQuery
from whoosh.support.charset import accent_map
from whoosh.writing import CLEAR

from bastion.search.backend import Document, Hits, IndexStatus, ObjectHits, Scope

log = logging.getLogger(__name__)

INDEX_NAME = "MAIN"
FIELDS_FILE = "fields.json"
TEXT_PREFIX = "t_"
ALL_PREFIX = "all_"
NO_OWNER = "-"
NO_OWNER_NUMBER = -1
#: A query looks for at most this many words; the rest of a pasted paragraph is ignored.
MAX_WORDS = 8
#: The last word also matches words it begins, once it is this long ...
MIN_PREFIX = 3
#: ... taking the most frequent of the first EXPANSION_SCAN such words in the index.
MAX_EXPANSIONS = 16
EXPANSION_SCAN = 400
EXPANSION_BOOST = 0.3
#: Matches are counted up to this many per object ("1000+" beyond): bounded work.
COUNT_CAP = 1000
#: Up to this many candidates, every match is scored (exact ranking and count at once);
#: up to RANK_UP_TO, Whoosh ranks them skipping what cannot reach the top; beyond, the
#: first matches in index order are shown, after looking at most at BROAD_BUDGET.
EXACT_UP_TO = 5000
RANK_UP_TO = 20_000
BROAD_BUDGET = 20_000
#: A word in more than this share of an object's documents (and at least in
#: COMMON_MIN_DOCS of them) is too common to narrow a search by itself.
COMMON_SHARE = 0.05
COMMON_MIN_DOCS = 5000
WRITER_MEMORY_MB = 64
SNIPPET_CHARS = 160
SNIPPET_LEAD = 50

# Words are runs of letters and digits (so "ada@example.com" is ada, example, com),
# lowercased, with accents folded so "muller" finds "Müller". No stop words: "On" and
# "The" can be part of a company's name.
ANALYZER = RegexTokenizer(r"\w+") | LowercaseFilter() | CharsetFilter(accent_map)


def text_field(object_name: str, field_name: str) -> str:
    return f"{TEXT_PREFIX}{object_name}__{field_name}"


def all_field(object_name: str) -> str:
    return f"{ALL_PREFIX}{object_name}"


def make_schema() -> Schema:
    schema = Schema(
        key=ID(unique=True, stored=True),
        object=ID,
        owner=ID,
        # The owner again as a per-document number: scope checks read it from an array.
        owner_number=COLUMN(NumericColumn("i", default=NO_OWNER_NUMBER)),
    )
    # Positions are not kept (phrase=False): queries are lists of words, not phrases.
    schema.add(f"{TEXT_PREFIX}*", TEXT(analyzer=ANALYZER, phrase=False), glob=True)
    schema.add(f"{ALL_PREFIX}*", TEXT(analyzer=ANALYZER, phrase=False), glob=True)
    return schema


def words(text: str) -> list[str]:
    """The distinct words of a query, in order, at most MAX_WORDS."""
    found: list[str] = []
    for token in ANALYZER(text, mode="query"):
        if token.text not in found:
            found.append(token.text)
        if len(found) >= MAX_WORDS:
            break
    return found


class _MarkFormatter(Formatter):
    """Escaped text with each match in <mark>; whatever the record holds stays text."""

    between = " … "

    def _text(self, text: str) -> str:
        return str(escape(text))

    def format_token(self, text: str, token: Any, replace: bool = False) -> str:
        return f"<mark>{escape(get_text(text, token, replace))}</mark>"


class _OwnedByMatcher(WrappingMatcher):
    """The child's documents whose owner (read from a per-document array) is allowed."""

    def __init__(self, child: Any, owners: array, allowed: frozenset[int]):
        super().__init__(child)
        self._owners = owners
        self._allowed = allowed
        self._find_next()

    def copy(self) -> Any:
        return self.__class__(self.child.copy(), self._owners, self._allowed)

    def _replacement(self, newchild: Any) -> Any:
        return self.__class__(newchild, self._owners, self._allowed)

    def _find_next(self) -> bool:
        child, owners, allowed = self.child, self._owners, self._allowed
        moved = False
        while child.is_active() and owners[child.id()] not in allowed:
            moved = child.next() or moved
        return moved

    def next(self) -> bool:
        moved = self.child.next()
        return self._find_next() or moved

    def skip_to(self, target: int) -> bool:
        moved = self.child.skip_to(target)
        return self._find_next() or moved

    def skip_to_quality(self, minquality: float) -> int:
        skipped = self.child.skip_to_quality(minquality)
        self._find_next()
        return skipped

    def all_ids(self) -> Iterator[int]:
        owners, allowed = self._owners, self._allowed
        return (i for i in self.child.all_ids() if owners[i] in allowed)


class _OwnedBy(WrappingQuery):
    """Only documents of these owners, without the owners affecting the score.

    Each candidate's owner is looked up in an array, which costs far less than
    intersecting with the owners' postings: the words searched for are usually much
    rarer than an owner's records.
    """

    def __init__(self, child: Query, owners: frozenset[int]):
        super().__init__(child)
        self.owners = frozenset(owners)

    def _rewrap(self, child: Query) -> Query:
        return self.__class__(child, self.owners)

    def matcher(self, searcher: Any, context: Any = None) -> Any:
        owners = _owner_numbers(searcher.reader())
        if owners is None:
            # Not a segment of this index's layout: show nothing rather than too much.
            log.warning("The search index has no owner column; run `bastion search reindex`.")
            return NullMatcher()
        return _OwnedByMatcher(self.child.matcher(searcher, context), owners, self.owners)


def _owner_numbers(reader: Any) -> array | None:
    """Owner id per document of one segment, read once per reader (4 bytes each)."""
    cached = getattr(reader, "_bastion_owners", None)
    if cached is not None:
        return cached
    if not reader.is_atomic() or not reader.has_column("owner_number"):
        return None
    column = reader.column_reader("owner_number", translate=False)
    numbers = array("i")
    try:
        if column._fixedlen != numbers.itemsize:
            raise AttributeError("another integer size")
        raw = column._dbfile.get(column._basepos, column._count * column._fixedlen)
    except AttributeError:  # not the numeric column expected: read it value by value
        numbers.extend(column[i] for i in range(reader.doc_count_all()))
    else:
        numbers.frombytes(raw)
        if sys.byteorder == "little":
            numbers.byteswap()  # stored big-endian
    missing = reader.doc_count_all() - len(numbers)
    if missing > 0:
        numbers.extend([NO_OWNER_NUMBER] * missing)
    reader._bastion_owners = numbers
    return numbers


class WhooshBackend:
    """A Whoosh index in one directory (see the module docstring)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._ix: Any = None
        self._lock = threading.Lock()
        self._local = threading.local()
        self._fields_cache: tuple[int, dict[str, frozenset[str]]] | None = None

    # ------------------------------------------------------------------ opening

    def _open(self, *, create: bool) -> Any:
        """The index (created on the first write), or None before there is one."""
        with self._lock:
            if self._ix is not None and self.path.is_dir():
                return self._ix
            self._ix = None  # never opened, or its directory was removed
            if not self.path.is_dir():
                if not create:
                    return None
                self.path.mkdir(parents=True, exist_ok=True)
            # No mmap: whoosh-reloaded copies a memory-mapped file into a BytesIO for
            # every reader it opens (the whole term dictionary, hundreds of MB at a
            # million records: most of a second per commit, and that much memory per
            # searching thread). Plain reads go through the operating system's cache.
            storage = FileStorage(str(self.path), supports_mmap=False)
            if storage.index_exists(INDEX_NAME):
                self._ix = storage.open_index(INDEX_NAME)
            elif create:
                self._ix = storage.create_index(make_schema(), INDEX_NAME)
            return self._ix

    def _searcher(self) -> Any:
        """This thread's searcher, replaced when a commit made it stale.

        Not ``Searcher.refresh()``: in whoosh-reloaded 2.7.5 it reuses a segment's old
        reader (segments compare by id, so new deletions are missed) and adds segments
        a merge removed back in, so deleted records would stay findable.
        """
        ix = self._open(create=False)
        if ix is None:
            return None
        local = self._local
        searcher = getattr(local, "searcher", None)
        if searcher is not None:
            try:
                fresh = local.ix is ix and ix.latest_generation() == searcher.reader().generation()
            except (OSError, ValueError):
                fresh = False
            if fresh:
                return searcher
            searcher.close()
        searcher = ix.searcher()
        local.searcher, local.ix = searcher, ix
        return searcher

    def close(self) -> None:
        """Close this thread's searcher (others close with their threads)."""
        searcher = getattr(self._local, "searcher", None)
        if searcher is not None:
            searcher.close()
            self._local.searcher = None

    # ------------------------------------------------------------------ fields.json

    def _fields_path(self) -> Path:
        return self.path / FIELDS_FILE

    def present_fields(self) -> dict[str, frozenset[str]]:
        """Object -> fields its combined field may hold (read again when it changed)."""
        try:
            stamp = self._fields_path().stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        cached = self._fields_cache
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            raw = json.loads(self._fields_path().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("%s is unreadable; searching field by field.", self._fields_path())
            return {}
        present = {name: frozenset(fields) for name, fields in raw.get("objects", {}).items()}
        self._fields_cache = (stamp, present)
        return present

    def _write_fields(self, present: dict[str, frozenset[str]]) -> None:
        path = self._fields_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {"objects": {name: sorted(fields) for name, fields in sorted(present.items())}}
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(body, indent=1), encoding="utf-8")
        os.replace(temporary, path)
        self._fields_cache = None

    def _grow_fields(self, documents: Iterable[Document]) -> None:
        """Declare new fields in the combined field before the commit that adds them."""
        present = dict(self.present_fields())
        grown = False
        for document in documents:
            before = present.get(document.object, frozenset())
            wanted = before | document.fields | frozenset(document.texts)
            if wanted != before:
                present[document.object] = wanted
                grown = True
        if grown:
            self._write_fields(present)

    # ------------------------------------------------------------------ writing

    def _writer(self) -> Any:
        ix = self._open(create=True)
        return ix.writer(timeout=10.0, limitmb=WRITER_MEMORY_MB)

    @staticmethod
    def _fields(document: Document) -> dict[str, Any]:
        values = {
            "key": document.key,
            "object": document.object,
            "owner": NO_OWNER if document.owner is None else str(document.owner),
            "owner_number": NO_OWNER_NUMBER if document.owner is None else document.owner,
        }
        for name, text in document.texts.items():
            values[text_field(document.object, name)] = text
        if document.texts:
            values[all_field(document.object)] = "\n".join(document.texts.values())
        return values

    def index_documents(self, documents: Sequence[Document], deleted: Sequence[str] = ()) -> None:
        if not documents and not deleted:
            return
        self._grow_fields(documents)
        writer = self._writer()
        try:
            for key in deleted:
                writer.delete_by_term("key", key)
            for document in documents:
                writer.update_document(**self._fields(document))
        except BaseException:
            writer.cancel()
            raise
        writer.commit()

    def delete_documents(self, keys: Sequence[str]) -> None:
        self.index_documents((), keys)

    def rebuild(
        self,
        batches: Iterable[Sequence[Document]],
        *,
        objects: Iterable[str] | None = None,
    ) -> int:
        only = None if objects is None else set(objects)
        before = self.present_fields()
        rebuilt: dict[str, frozenset[str]] = {name: frozenset() for name in only or ()}
        writer = self._writer()
        written = 0
        try:
            for name in sorted(only or ()):
                writer.delete_by_term("object", name)
            for batch in batches:
                for document in batch:
                    if only is not None and document.object not in only:
                        continue
                    fields = document.fields | frozenset(document.texts)
                    rebuilt[document.object] = rebuilt.get(document.object, frozenset()) | fields
                    writer.add_document(**self._fields(document))
                    written += 1
        except BaseException:
            writer.cancel()
            raise
        # Readers see old documents until the commit, new ones after: declare both
        # meanwhile, then only what the new documents hold.
        during = dict(before)
        for name, fields in rebuilt.items():
            during[name] = during.get(name, frozenset()) | fields
        self._write_fields(during)
        if only is None:
            writer.commit(mergetype=CLEAR)
            self._write_fields(rebuilt)
        else:
            writer.commit()
            self._write_fields({**before, **rebuilt})
        return written

    def object_rewritten(self, object_name: str, fields: frozenset[str]) -> None:
        present = dict(self.present_fields())
        before = present.get(object_name, frozenset())
        present[object_name] = fields
        self._write_fields(present)
        if before - fields:
            self.compact()

    def compact(self) -> None:
        ix = self._open(create=False)
        if ix is not None:
            writer = ix.writer(timeout=10.0)
            writer.commit(optimize=True)

    def clear(self) -> None:
        self.rebuild(())

    # ------------------------------------------------------------------ searching

    def search(self, text: str, scopes: Sequence[Scope], *, limit: int) -> Hits:
        wanted = words(text)
        searcher = self._searcher() if wanted else None
        if searcher is None:
            return Hits()
        present = self.present_fields()
        terms = set(wanted)
        groups = []
        for scope in scopes:
            if not scope.fields or (scope.owners is not None and not scope.owners):
                continue
            combined = present.get(scope.object, frozenset()) <= set(scope.fields)
            names = (
                [all_field(scope.object)]
                if combined
                else [text_field(scope.object, name) for name in scope.fields]
            )
            plan = _plan(searcher.reader(), scope.object, names, wanted)
            terms.update(plan.expansions)
            found = _run(searcher, plan, scope, limit)
            if found is not None:
                groups.append(found)
        return Hits(groups, frozenset(terms))

    def highlight(self, text: str, terms: Iterable[str]) -> str | None:
        termset = frozenset(terms)
        if not text or not termset:
            return None
        first = None
        for token in ANALYZER(text, chars=True, mode="query"):
            if token.text in termset:
                first = token.startchar
                break
        if first is None:
            return None
        # A long value is cut to a window that starts a little before the first match.
        start, end = 0, len(text)
        if end > SNIPPET_CHARS:
            start = max(0, first - SNIPPET_LEAD)
            if start:
                start = _word_start(text, start)
            end = min(len(text), start + SNIPPET_CHARS)
            if end < len(text):
                end = _word_end(text, start, end)
        window = text[start:end]
        html = whoosh_highlight(window, termset, ANALYZER, WholeFragmenter(), _MarkFormatter())
        if not html:
            return None
        return ("… " if start else "") + html + (" …" if end < len(text) else "")

    # ------------------------------------------------------------------ status

    def status(self) -> IndexStatus:
        searcher = self._searcher()
        size = _size(self.path)
        if searcher is None:
            return IndexStatus(str(self.path), 0, {}, size)
        reader = searcher.reader()
        by_object = {}
        for raw in reader.lexicon("object"):
            name = raw.decode("utf-8")
            count = sum(1 for _ in searcher.docs_for_query(Term("object", name)))
            if count:
                by_object[name] = count
        return IndexStatus(str(self.path), searcher.doc_count(), by_object, size)

    def keys(self, object_name: str) -> Iterator[str]:
        """Keys of an object's documents (tests and diagnostics)."""
        searcher = self._searcher()
        if searcher is None:
            return
        for docnum in searcher.docs_for_query(Term("object", object_name)):
            yield searcher.stored_fields(docnum)["key"]


def _expand(reader: Any, field_name: str, word: str) -> list[str]:
    """The most frequent indexed words that begin with ``word`` (bounded work)."""
    if len(word) < MIN_PREFIX:
        return []
    found = []
    try:
        for raw in islice(reader.expand_prefix(field_name, word), EXPANSION_SCAN):
            text = raw.decode("utf-8")
            if text != word:
                found.append((reader.doc_frequency(field_name, text), text))
    except KeyError:  # no such field in this index yet
        return []
    found.sort(key=lambda pair: (-pair[0], pair[1]))
    return [text for _, text in found[:MAX_EXPANSIONS]]


def _count(searcher: Any, query: Query, cap: int) -> int:
    """Matches of ``query``, counting stops past ``cap``.

    Walks the matchers (which leapfrog with skip_to) rather than ``docs_for_query``:
    Whoosh intersects by building sets of every id on both sides, which for an owner
    filter means reading all of those owners' documents.
    """
    found = 0
    for leaf, _offset in searcher.leaf_searchers():
        matcher = query.matcher(leaf, leaf.boolean_context())
        while matcher.is_active():
            found += 1
            if found > cap:
                return found
            matcher.next()
    return found


@dataclass
class _Plan:
    """How one object is searched: which words, in which fields, and how."""

    names: list[str]
    words: list[str]
    expansions: list[str]
    #: Documents the rarest word occurs in (an upper bound of the matches).
    estimate: int
    #: Every word is so frequent that ranking means nothing and would cost a full scan.
    broad: bool


def _frequency(reader: Any, names: list[str], texts: list[str]) -> int:
    return sum(reader.doc_frequency(name, text) for name in names for text in texts)


def _plan(reader: Any, object_name: str, names: list[str], wanted: list[str]) -> _Plan:
    """Words occurring in a large share of an object's documents ("com" in every email
    address) narrow nothing and make Whoosh walk long lists: when rarer words are
    present, they alone decide (they still count for highlighting)."""
    expansions = _expand(reader, all_field(object_name), wanted[-1])
    frequency = {
        word: _frequency(reader, names, [word, *(expansions if i == len(wanted) - 1 else [])])
        for i, word in enumerate(wanted)
    }
    documents = reader.doc_frequency("object", object_name)
    common = max(COMMON_MIN_DOCS, COMMON_SHARE * documents)
    rare = [word for word in wanted if frequency[word] <= common]
    chosen = rare or wanted
    kept = expansions if chosen[-1] == wanted[-1] else []
    return _Plan(names, chosen, kept, min(frequency[w] for w in chosen), broad=not rare)


def _run(searcher: Any, plan: _Plan, scope: Scope, limit: int) -> ObjectHits | None:
    if plan.broad or plan.estimate > RANK_UP_TO:
        # So many candidates that ranking them would scan them all (their scores hardly
        # differ): the first ones in index order, and a bounded count. The user is told
        # there are more, and adds a word.
        ids, total, complete = _first(searcher, plan, scope.owners, limit)
        exact = complete and total <= COUNT_CAP
    else:
        # Few candidates: score them all, and the count comes with the ranking. More:
        # skip blocks that cannot reach the top, then count separately (capped).
        # replace=0 always: Whoosh's matcher replacement drops sub-queries mid-way and
        # then ranks and counts wrongly (tests/core/data/test_search_backend.py).
        query = _query(plan, scope.owners)
        scored = plan.estimate <= EXACT_UP_TO
        collector = TopCollector(limit=limit, usequality=not scored, replace=0)
        searcher.search_with_collector(query, collector)
        ids = [_record_id(hit["key"]) for hit in collector.results()]
        total = collector.count() if scored else _count(searcher, query, COUNT_CAP)
        exact = total <= COUNT_CAP
    if not ids:
        return None
    return ObjectHits(scope.object, ids, max(min(total, COUNT_CAP), len(ids)), exact)


def _first(
    searcher: Any, plan: _Plan, owners: frozenset[int] | None, limit: int
) -> tuple[list[int], int, bool]:
    """The first ``limit`` matches, the number of matches (counting stops past
    COUNT_CAP) and whether every candidate was seen (at most BROAD_BUDGET are)."""
    query = _query(plan, None)
    ids: list[int] = []
    found = seen = 0
    for leaf, _offset in searcher.leaf_searchers():
        numbers = None if owners is None else _owner_numbers(leaf.reader())
        if owners is not None and numbers is None:
            continue  # not this index's layout: show nothing rather than too much
        matcher = query.matcher(leaf, leaf.boolean_context())
        while matcher.is_active():
            seen += 1
            if seen > BROAD_BUDGET:
                return ids, found, False
            docnum = matcher.id()
            if numbers is None or numbers[docnum] in owners:  # type: ignore[operator]
                found += 1
                if len(ids) < limit:
                    ids.append(_record_id(leaf.stored_fields(docnum)["key"]))
                if found > COUNT_CAP:
                    return ids, found, True
            matcher.next()
    return ids, found, True


def _query(plan: _Plan, owners: frozenset[int] | None) -> Query:
    clauses: list[Query] = []
    for position, word in enumerate(plan.words):
        alternatives: list[Query] = [Term(name, word) for name in plan.names]
        if position == len(plan.words) - 1:
            # Longer words the last one begins rank below the word typed in full (rare
            # words, such as an email's local part, would otherwise outrank it).
            alternatives += [
                Term(name, other, boost=EXPANSION_BOOST)
                for name in plan.names
                for other in plan.expansions
            ]
        clauses.append(alternatives[0] if len(alternatives) == 1 else Or(alternatives))
    query: Query = clauses[0] if len(clauses) == 1 else And(clauses)
    if owners is not None:
        query = _OwnedBy(query, owners)
    return query


def _word_start(text: str, index: int) -> int:
    """``index`` moved forward past a partly cut word (unless the word is very long)."""
    space = text.find(" ", index, index + 20)
    return index if space < 0 else space + 1


def _word_end(text: str, start: int, index: int) -> int:
    """``index`` moved back to the end of the last whole word."""
    space = text.rfind(" ", start + 1, index)
    return index if space < 0 or index - space > 20 else space


def _record_id(key: str) -> int:
    return int(key.rpartition(":")[2])


def _size(path: Path) -> int | None:
    if not path.is_dir():
        return None
    return sum(item.stat().st_size for item in path.iterdir() if item.is_file())
