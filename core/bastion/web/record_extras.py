"""What enabled plugins add to a record's detail page: panels and header actions.

Both come from list hooks (``record_panels``, ``record_actions``) called through the
platform's guarded caller: a plugin's exception or malformed item is logged, recorded
against the plugin (Administration > Plugins) and dropped, and a panel whose template
fails shows a placeholder. The page itself always renders.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import render_template
from flask_login import current_user
from markupsafe import Markup

from bastion.data.catalog import ObjectMeta
from bastion.data.records import Record
from bastion.plugins.contributions import RecordAction, RecordPanel
from bastion.runtime import platform


@dataclass
class RenderedPanel:
    owner: str
    panel: RecordPanel
    #: The rendered template, or None when it failed (a placeholder is shown).
    body: Markup | None


def record_actions(meta: ObjectMeta, record: Record) -> list[RecordAction]:
    items = platform().hook_items(
        "record_actions", RecordAction, object_name=meta.name, record=record, user=current_user
    )
    return [action for _, action in sorted(items, key=lambda p: (p[1].order, p[1].label))]


def record_panels(meta: ObjectMeta, record: Record) -> list[RenderedPanel]:
    plat = platform()
    items = plat.hook_items(
        "record_panels", RecordPanel, object_name=meta.name, record=record, user=current_user
    )
    rendered = []
    for owner, panel in sorted(items, key=lambda p: (p[1].order, p[1].title)):
        try:
            html = render_template(
                panel.template, **{"record": record, "meta": meta, **panel.context}
            )
            body = Markup(html)  # noqa: S704 - autoescaped template output
        except Exception as exc:
            plat.registry.record_failure(
                owner, "record_panels", f"{type(exc).__name__}: {exc}", exc
            )
            body = None
        rendered.append(RenderedPanel(owner, panel, body))
    return rendered
