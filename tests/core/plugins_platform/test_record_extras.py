"""record_panels and record_actions: what enabled plugins add to a record's detail page."""

from __future__ import annotations

import pytest

from bastion.data.records import RecordService
from bastion.plugins.contributions import ContributionError, RecordAction, RecordPanel
from bastion.runtime import platform
from tests.core.plugins_platform.support import parse, set_enabled, text


def example_module(app):
    return platform(app).registry.plugins["example"].module


@pytest.fixture
def thing(plugin_app):
    with plugin_app.test_request_context():
        record = RecordService(None, system=True).create(
            "example_things", {"name": "Widget", "size": 7}
        )
    return record.id


@pytest.fixture
def failures(plugin_app, monkeypatch):
    """Reset the example plugin's failure switches after the test."""
    module = example_module(plugin_app)
    monkeypatch.setattr(module, "PANEL_FAILURE", None)
    monkeypatch.setattr(module, "ACTION_FAILURE", None)
    return module


def test_hook_record_panels(plugin_app, plugin_admin, thing, failures):
    url = f"/o/example_things/{thing}"
    page = text(plugin_admin.get(url))
    assert "Example panel" not in page  # disabled: not called
    set_enabled(plugin_app, "example")
    response = plugin_admin.get(url)
    assert response.status_code == 200
    panel = parse(text(response)).find("section", data_panel_plugin="example")
    assert panel.find("h2").text == "Example panel"
    # Rendered with record, meta and the panel's context.
    assert panel.find("p", class_="example-panel").text == (
        "Example thing Widget is 7 big, seen by Administrator."
    )
    # Other objects get nothing from this plugin.
    with plugin_app.test_request_context():
        account = RecordService(None, system=True).create("accounts", {"name": "Acme"})
    assert "Example panel" not in text(plugin_admin.get(f"/o/accounts/{account.id}"))
    set_enabled(plugin_app, "example", enabled=False)
    assert "Example panel" not in text(plugin_admin.get(url))


def test_hook_record_actions(plugin_app, plugin_admin, thing, failures):
    url = f"/o/example_things/{thing}"
    assert "Double size" not in text(plugin_admin.get(url))
    set_enabled(plugin_app, "example")
    head = parse(text(plugin_admin.get(url))).find("div", class_="page-head")
    labels = [el.text for el in head.find_all(class_=True) if "record-action" in el["class"]]
    assert labels == ["Wave", "Open example page"]  # by order
    link = head.find("a", href="/example/")
    assert link["class"] == "button record-action"
    form = head.find("form", action=f"/example/things/{thing}/wave")
    assert form["method"] == "post"
    token = form.find("input", name="csrf_token")["value"]
    button = form.find("button")
    assert button["class"] == "button button--danger"
    assert form["data-confirm"] == button["title"] == "Wave at this thing?"
    # The theme's script asks the question before the form is sent.
    page = text(plugin_admin.get(url))
    script = next(s for s in parse(page).find_all("script") if "bastion.js" in (s.get("src") or ""))
    source = text(plugin_admin.get(script["src"]))
    assert 'hasAttribute("data-confirm")' in source and "window.confirm" in source
    # The form posts as it is: with the page's CSRF token it goes through.
    sent = plugin_admin.post(form["action"], data={"csrf_token": token})
    assert sent.status_code == 302
    assert "You waved at example thing" in text(plugin_admin.get(sent.headers["Location"]))
    assert plugin_admin.post(form["action"]).status_code == 400  # no token, refused


@pytest.mark.parametrize(
    ("switch", "value"),
    [("PANEL_FAILURE", "raise"), ("PANEL_FAILURE", "template"), ("ACTION_FAILURE", "raise")],
)
def test_a_broken_panel_or_action_does_not_break_the_page(
    plugin_app, plugin_admin, thing, failures, switch, value
):
    set_enabled(plugin_app, "example")
    setattr(failures, switch, value)
    response = plugin_admin.get(f"/o/example_things/{thing}")
    assert response.status_code == 200
    page = text(response)
    assert "Widget" in page
    stage = "record_panels" if switch == "PANEL_FAILURE" else "record_actions"
    recorded = platform(plugin_app).registry.failures_by_plugin()["example"]
    assert [f.stage for f in recorded] == [stage]
    if value == "template":
        panel = parse(page).find("section", data_panel_plugin="example")
        assert "could not be shown" in panel.text
    # The administrators see it on the plugins page.
    assert stage in text(plugin_admin.get("/admin/plugins"))


@pytest.mark.parametrize(
    "url",
    [
        "/\\evil.example/x",  # browsers read the backslash as a slash: //evil.example
        "/\t/evil.example",  # and drop tabs and newlines: //evil.example
        "/\n/evil.example",
        "/ /evil.example",
        "/\x00x",
        "/x\x7f",
        "https://evil.example/",
        "x/relative",
        "",
        None,
    ],
)
def test_an_action_url_that_could_leave_the_site_is_refused(url):
    with pytest.raises(ContributionError, match="path on this site"):
        RecordAction("Go", url)


def test_panels_and_actions_validate_themselves():
    with pytest.raises(ContributionError, match="title"):
        RecordPanel("", "x.html")
    with pytest.raises(ContributionError, match="title"):
        RecordPanel("  ", "x.html")
    with pytest.raises(ContributionError, match="label"):
        RecordAction(" \t", "/x")
    assert RecordAction("Go", "/o/x/1?next=%2Fa%20b#frag").url.startswith("/o/x/1")
    with pytest.raises(ContributionError, match="mapping"):
        RecordPanel("P", "x.html", context=[("a", 1)])
    with pytest.raises(ContributionError, match="path on this site"):
        RecordAction("Go", "javascript:alert(1)")
    with pytest.raises(ContributionError, match="path on this site"):
        RecordAction("Go", "//evil.example/x")
    with pytest.raises(ContributionError, match="method"):
        RecordAction("Go", "/x", method="delete")
    with pytest.raises(ContributionError, match="style"):
        RecordAction("Go", "/x", style="loud")
    assert RecordAction("Go", "/x", method="post", confirm="Sure?").confirm == "Sure?"


def test_a_panel_is_placed_at_the_top_or_the_bottom():
    assert RecordPanel("Lines", "x.html", placement="top").placement == "top"
    with pytest.raises(ContributionError, match="placement"):
        RecordPanel("Lines", "x.html", placement="middle")  # type: ignore[arg-type]
