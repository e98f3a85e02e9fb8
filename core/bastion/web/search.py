"""Global search: the results page, the header box's live results, and the API.

``GET /search?q=...[&objects=a,b][&limit=N]`` renders results grouped by object (works
without JavaScript: the header box is a plain GET form). ``GET /search/suggest?q=...``
is the htmx fragment under the header box.

``GET /api/v1/search?q=...[&objects=a,b][&limit=N]`` answers::

    {
      "query": "lovelace",
      "data": [
        {"object": "contacts", "id": 5, "name": "Ada Lovelace",
         "snippet": "<mark>Lovelace</mark>", "field": "last_name",
         "url": "/o/contacts/5"}
      ],
      "groups": [
        {"object": "contacts", "label": "Contacts", "total": 1, "exact": true,
         "returned": 1}
      ]
    }

``data`` is flat, ordered by object (as in ``groups``) then by relevance. ``snippet`` is
HTML: the text of one readable field, escaped, with matches in ``<mark>``; ``field`` names
that field (both null when no readable field holds a match to excerpt). ``limit`` (1-50,
default 10) is per object; ``total`` counts matches in the caller's scope, at least
``returned``, and ``exact`` is false when counting stopped at 1000. Only objects, fields
and records the caller may read are searched. Errors are problem details: an empty or
over-long ``q``, an unknown object or a bad ``limit`` is 400 with ``field`` naming the
parameter; asking for an object the caller may not read is 403; a damaged index is 503
(``bastion search reindex`` rebuilds it).
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, render_template, request
from flask_login import current_user

from bastion.access import login_required
from bastion.data.errors import RecordError
from bastion.data.requests import request_service
from bastion.search.service import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    SearchError,
    SearchOutcome,
    SearchUnavailable,
    search,
)
from bastion.web import read_audit
from bastion.web.errors import problem
from bastion.web.params import bounded_int

bp = Blueprint("search", __name__)

API_DEFAULT_LIMIT = 10
SUGGEST_LIMIT = 3
PAGE_MORE_LIMIT = 50


def _objects_param() -> list[str] | None:
    raw = request.args.get("objects", "")
    names = [name.strip() for name in raw.split(",") if name.strip()]
    return names or None


def _limit_param(default: int) -> int:
    raw = request.args.get("limit")
    if raw is None or raw == "":
        return default
    value = bounded_int(raw, minimum=1, maximum=MAX_LIMIT)
    if value is None:
        raise SearchError(f"limit must be a whole number from 1 to {MAX_LIMIT}.", "limit")
    return value


def _run(default_limit: int) -> SearchOutcome:
    service = request_service()
    outcome = search(
        current_user,
        request.args.get("q", ""),
        objects=_objects_param(),
        limit_per_object=_limit_param(default_limit),
        service=service,
    )
    read_audit.listed_hits(outcome.hits)
    return outcome


@bp.get("/search")
@login_required
def page():
    q = request.args.get("q", "")
    objects = _objects_param()
    context = {"q": q, "objects": objects, "outcome": None, "error": None}
    status = 200
    if q.strip():
        try:
            context["outcome"] = _run(DEFAULT_LIMIT)
        except SearchError as exc:
            context["error"], status = exc.message, 400
        except RecordError as exc:
            context["error"], status = exc.message, exc.status
        except SearchUnavailable as exc:
            context["error"], status = str(exc), 503
    return render_template("search/results.html", more_limit=PAGE_MORE_LIMIT, **context), status


@bp.get("/search/suggest")
@login_required
def suggest():
    """The header box's live results (htmx): a few hits per object, or nothing."""
    q = request.args.get("q", "")
    outcome = None
    if q.strip():
        try:
            outcome = search(
                current_user, q, limit_per_object=SUGGEST_LIMIT, service=request_service()
            )
        except (SearchError, SearchUnavailable):
            outcome = None
    if outcome is not None:
        read_audit.listed_hits(outcome.hits, via="suggest")
    return render_template("search/_suggest.html", q=q.strip(), outcome=outcome)


@bp.get("/api/v1/search")
@login_required
def api_search() -> Response:
    try:
        outcome = _run(API_DEFAULT_LIMIT)
    except SearchError as exc:
        return _problem(400, "Bad search", exc.message, exc.field)
    except RecordError as exc:
        return _problem(exc.status, exc.title, exc.message, "objects")
    except SearchUnavailable as exc:
        return _problem(503, "Search unavailable", str(exc), None)
    return jsonify(
        {
            "query": outcome.query,
            "data": [hit.as_json() for hit in outcome.hits],
            "groups": [group.as_json() for group in outcome.groups],
        }
    )


def _problem(status: int, title: str, detail: str, field: str | None) -> Response:
    response = problem(status, title, detail)
    if field is not None:
        body = response.get_json()
        body["field"] = field
        response.set_data(jsonify(body).get_data())
    return response


__all__ = ["DEFAULT_LIMIT", "bp"]
