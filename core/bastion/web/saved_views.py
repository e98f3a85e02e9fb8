"""Saved views: a user's named list query strings (filters, sort, columns), per object.

A view belongs to one user: others never see, open or delete it (a view id of someone
else is a 404). Saving a name that exists replaces that view's query.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from flask import abort, flash, redirect, request
from flask_login import current_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from bastion.access import login_required
from bastion.data import blind_index
from bastion.data.catalog import ObjectMeta, current_catalog
from bastion.data.errors import BadQuery
from bastion.data.models import SavedView
from bastion.data.params import parse_list_params
from bastion.db import db
from bastion.web.params import bounded_int
from bastion.web.records_common import bp, list_url, object_for

MAX_QUERY = 2000
MAX_NAME = 100
MAX_VIEWS = 100
#: A view is a list, not a page of it.
NOT_SAVED = frozenset({"cursor", "partial", "view"})


def views_of(meta: ObjectMeta) -> list[SavedView]:
    return list(
        db.session.scalars(
            select(SavedView)
            .where(SavedView.user_id == current_user.id, SavedView.object_name == meta.name)
            .order_by(SavedView.name)
        )
    )


def _own_view(meta: ObjectMeta, view_id: int | None) -> SavedView:
    view = db.session.get(SavedView, view_id) if view_id else None
    if view is None or view.user_id != current_user.id or view.object_name != meta.name:
        abort(404)
    return view


def clean_query(text: str) -> str:
    pairs = [(k, v) for k, v in parse_qsl(text, keep_blank_values=False) if k not in NOT_SAVED]
    return urlencode(pairs)


def open_view(meta: ObjectMeta, raw_id: str) -> Response | None:
    """A redirect to the view's list; None when the view is the whole list as it is."""
    view = _own_view(meta, bounded_int(raw_id, minimum=1))
    pairs = parse_qsl(view.query)
    if not pairs:
        return None
    return redirect(list_url(meta.name, pairs, view=view.id))


@bp.post("/<object>/views")
@login_required
def save_view(object: str):
    meta = object_for(object)
    name = " ".join(request.form.get("name", "").split())
    query = clean_query(request.form.get("query", ""))
    back = list_url(meta.name, parse_qsl(query))
    if not name or len(name) > MAX_NAME:
        flash(f"Give the view a name of 1 to {MAX_NAME} characters.", "error")
        return redirect(back)
    if len(query) > MAX_QUERY:
        flash("This list has too many filters to save as a view.", "error")
        return redirect(back)
    try:
        params = parse_list_params(parse_qsl(query))
    except BadQuery as exc:
        flash(f"This list cannot be saved: {exc.message}", "error")
        return redirect(back)
    for item in params.filters:
        secret = blind_index.encrypted_target(current_catalog(), meta, item.path)
        if secret is not None:  # the view would keep the value in plain text
            flash(
                f"This list cannot be saved as a view: it filters on {secret.label}, which is "
                "encrypted, and a view would store the value unencrypted.",
                "error",
            )
            return redirect(back)
    existing = db.session.scalar(
        select(SavedView).where(
            SavedView.user_id == current_user.id,
            SavedView.object_name == meta.name,
            SavedView.name == name,
        )
    )
    if existing is None:
        if len(views_of(meta)) >= MAX_VIEWS:
            flash(f"You have {MAX_VIEWS} views of this list; delete one first.", "error")
            return redirect(back)
        existing = SavedView(user_id=current_user.id, object_name=meta.name, name=name)
        db.session.add(existing)
    existing.query = query
    db.session.commit()
    flash(f"View “{name}” saved.", "success")
    return redirect(list_url(meta.name, parse_qsl(query), view=existing.id))


@bp.post("/<object>/views/<int:view_id>/delete")
@login_required
def delete_view(object: str, view_id: int):
    meta = object_for(object)
    view = _own_view(meta, view_id)
    name = view.name
    db.session.delete(view)
    db.session.commit()
    flash(f"View “{name}” deleted.", "success")
    return redirect(list_url(meta.name))
