"""Helpers for driving plugin administration through the web UI and reading its pages."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser

from flask import Flask
from flask_login import current_user

from bastion.access import login_required, user_permissions
from bastion.db import db
from bastion.identity import create_user, ensure_role
from bastion.plugins import state
from bastion.runtime import platform
from tests.conftest import ADMIN_PASSWORD, csrf_token

PROBE = "/_test/access"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "wbr"}


@dataclass
class Element:
    """A parsed HTML element: enough of a DOM to ask pages questions by structure."""

    tag: str
    attrs: dict[str, str]
    children: list[Element | str] = field(default_factory=list)

    def __getitem__(self, name: str) -> str:
        return self.attrs[name]

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.attrs.get(name, default)

    @property
    def text(self) -> str:
        """The text content, whitespace collapsed."""
        parts: list[str] = []

        def walk(node: Element) -> None:
            for child in node.children:
                if isinstance(child, str):
                    parts.append(child)
                else:
                    walk(child)

        walk(self)
        return " ".join("".join(parts).split())

    def find_all(self, tag: str | None = None, **attrs: str | bool) -> list[Element]:
        """Descendants by tag and attributes: data_state="x" matches data-state="x",
        for_="x" matches for="x", True matches any value."""
        wanted = {name.rstrip("_").replace("_", "-"): value for name, value in attrs.items()}
        found: list[Element] = []

        def walk(node: Element) -> None:
            for child in node.children:
                if isinstance(child, str):
                    continue
                if (tag is None or child.tag == tag) and all(
                    (name in child.attrs) if value is True else child.attrs.get(name) == value
                    for name, value in wanted.items()
                ):
                    found.append(child)
                walk(child)

        walk(self)
        return found

    def find(self, tag: str | None = None, **attrs: str | bool) -> Element:
        found = self.find_all(tag, **attrs)
        assert found, f"no <{tag or '*'}> with {attrs} in the page"
        return found[0]


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self.stack[-1].children.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Element(tag, {n: v or "" for n, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(page: str) -> Element:
    builder = _TreeBuilder()
    builder.feed(page)
    builder.close()
    return builder.root


def install_probe(app: Flask) -> None:
    """A core route that reports what the access layer grants the signed-in user.

    It goes through the same permission resolution every route uses, so it shows
    whether a permission grants anything right now.
    """

    @login_required
    def probe():
        return {
            "permissions": sorted(user_permissions(current_user)),
            "enabled": sorted(platform().enabled_plugins()),
        }

    app.add_url_rule(PROBE, "test_probe", probe)


def probe(client) -> dict:
    response = client.get(PROBE)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def admin_change(client, name: str, action: str, *, htmx: bool = False):
    """Press the enable or disable button of a plugin on /admin/plugins."""
    token = csrf_token(client, "/admin/plugins")
    headers = {"HX-Request": "true"} if htmx else {}
    return client.post(
        f"/admin/plugins/{name}/{action}", data={"csrf_token": token}, headers=headers
    )


def text(response) -> str:
    return response.get_data(as_text=True)


def visible(page: str) -> str:
    """What a reader sees: the page's text, entities decoded, whitespace collapsed."""
    return parse(page).text


def flashes(page: str) -> list[str]:
    """The flash messages of a page or htmx partial."""
    return [p.text for p in parse(page).find("div", id="flashes").find_all("p")]


def admin_states(page: str) -> dict[str, str]:
    """Plugin name -> data-state (enabled, disabled, waiting, broken) on the plugins page."""
    return {
        card["data-plugin"]: card["data-state"]
        for card in parse(page).find_all("article", data_plugin=True)
    }


def admin_card(page: str, name: str) -> Element:
    return parse(page).find("article", data_plugin=name)


def site_nav(page: str) -> Element:
    return parse(page).find("nav", id="site-nav")


def nav_links(page: str) -> dict[str, str]:
    """href -> owning plugin of every entry in the main navigation, in order."""
    return {a["href"]: a["data-plugin"] for a in site_nav(page).find_all("a", data_plugin=True)}


def stylesheets(page: str) -> list[str]:
    return [link["href"] for link in parse(page).find_all("link", rel="stylesheet")]


def add_user(app: Flask, email: str, role: str, permissions: Iterable[str]) -> None:
    with app.app_context():
        granted = ensure_role(role, role.replace("_", " ").title(), permissions)
        create_user(
            app.extensions["bastion.passwords"],
            email=email,
            password=ADMIN_PASSWORD,
            name=email.split("@")[0],
            roles=[granted],
        )
        db.session.commit()


def set_enabled(app: Flask, *names: str, enabled: bool = True) -> None:
    """Arrange state directly (the UI and CLI paths have their own tests)."""
    with app.app_context():
        change = state.enable if enabled else state.disable
        change(platform(app).registry, names, actor="test")
