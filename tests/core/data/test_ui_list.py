"""List pages: columns, sorting, filters, search, keyset "load more", bulk actions,
saved views, the lookup type-ahead, and scope (a rep sees only their team's records)."""

from __future__ import annotations

from bastion.data.params import parse_list_params
from tests.core.data.conftest import ADMIN, MARIA, SAM, client_as, user_id
from tests.core.data.ui_support import HTMX, create, names_in, page, post, row_ids, stored

ACCOUNTS = [
    ("Acme Bank", "Banking", "Lyon"),
    ("Beta Insurance", "Insurance", "Paris"),
    ("Cobalt Bank", "Banking", "Oslo"),
    ("Delta Health", "Healthcare", "Paris"),
]


def header_texts(response) -> list[str]:
    table = page(response).find("table", id="records-table")
    return [th.text.rstrip(" ▲▼") for th in table.find_all("th")]


def seed(app, email=ADMIN) -> dict[str, int]:
    return {
        name: create(app, email, "accounts", {"name": name, "industry": kind, "city": city})
        for name, kind, city in ACCOUNTS
    }


def test_list_sorts_filters_and_searches(demo_app):
    seed(demo_app)
    client = client_as(demo_app, ADMIN)
    listed = client.get("/o/accounts")
    assert listed.status_code == 200
    assert names_in(listed) == ["Acme Bank", "Beta Insurance", "Cobalt Bank", "Delta Health"]
    headers = header_texts(listed)
    assert headers[1] == "Account name"  # after the select-all box: the name comes first
    assert "Industry" in headers and "Owner" in headers
    # The name header is sorted ascending and links to the descending order.
    name_header = page(listed).find("th", aria_sort="ascending")
    assert name_header.find("a")["href"].endswith("sort=-name")

    reverse = client.get("/o/accounts?sort=-name")
    assert names_in(reverse) == ["Delta Health", "Cobalt Bank", "Beta Insurance", "Acme Bank"]
    assert page(reverse).find("th", aria_sort="descending").text.startswith("Account name")

    banks = client.get("/o/accounts?industry=Banking&sort=-name")
    assert names_in(banks) == ["Cobalt Bank", "Acme Bank"]
    assert "Industry is Banking" in page(banks).find("ul", class_="filter-chips").text

    searched = client.get("/o/accounts?q=BANK")
    assert names_in(searched) == ["Acme Bank", "Cobalt Bank"]
    paris = client.get("/o/accounts?city__contains=par&sort=name")
    assert names_in(paris) == ["Beta Insurance", "Delta Health"]

    # The filter form is made from the field types and keeps the current values.
    form = page(banks).find("form", id="filters-form")
    industry = form.find("select", name="industry")
    assert [o.text for o in industry.find_all("option") if "selected" in o.attrs] == ["Banking"]
    assert form.find("input", name="city__contains")
    assert form.find("input", name="employees__gte")["type"] == "number"


def test_chosen_columns_and_bad_queries(demo_app):
    seed(demo_app)
    client = client_as(demo_app, ADMIN)
    chosen = client.get("/o/accounts?columns=city,name")
    headers = header_texts(chosen)
    assert headers[1:] == ["City", "Account name"]
    assert names_in(chosen)[0] == "Lyon"  # the first column links to the record

    unknown = client.get("/o/accounts?colour=red")
    assert unknown.status_code == 400
    assert "no field 'colour'" in page(unknown).find("div", id="list-error").text
    unsortable = client.get("/o/accounts?sort=description")
    assert unsortable.status_code == 400
    assert "cannot be sorted by Description" in unsortable.get_data(as_text=True)
    assert client.get("/o/accounts?limit=0").status_code == 400
    assert client.get("/o/no_such_object").status_code == 404


def test_load_more_appends_the_next_page(demo_app):
    for number in range(7):
        create(demo_app, ADMIN, "accounts", {"name": f"Account {number}"})
    client = client_as(demo_app, ADMIN)
    first = client.get("/o/accounts?limit=3&sort=name")
    assert names_in(first) == ["Account 0", "Account 1", "Account 2"]
    more = page(first).find("a", id="load-more")
    assert "cursor=" in more["href"] and more["hx-get"].endswith("&partial=rows")

    # htmx asks for the rows only: a table body and the next "Load more".
    second = client.get(more["hx-get"], headers=HTMX)
    body = second.get_data(as_text=True)
    assert "<html" not in body and body.lstrip().startswith("<tbody")
    assert names_in(second) == ["Account 3", "Account 4", "Account 5"]
    # Without JavaScript the same link opens the next page as a whole page.
    assert names_in(client.get(more["href"])) == ["Account 3", "Account 4", "Account 5"]

    last = client.get(page(second).find("a", id="load-more")["hx-get"], headers=HTMX)
    assert names_in(last) == ["Account 6"]
    assert page(last).find_all("a", id="load-more") == []


def test_empty_states(demo_app):
    client = client_as(demo_app, ADMIN)
    empty = page(client.get("/o/accounts")).find("div", id="list-empty")
    assert "No accounts yet" in empty.text
    assert empty.find("a")["href"] == "/o/accounts/new"
    create(demo_app, ADMIN, "accounts", {"name": "Only one"})
    none = page(client.get("/o/accounts?q=zzz")).find("div", id="list-empty")
    assert "No accounts match these filters" in none.text


def test_navigation_lists_the_objects_the_user_may_read(demo_app):
    admin = page(client_as(demo_app, ADMIN).get("/")).find("nav", id="site-nav")
    hrefs = [a["href"] for a in admin.find_all("a", data_plugin="core")]
    assert {"/o/accounts", "/o/contacts", "/o/activities"} <= set(hrefs)
    labels = [a.text for a in admin.find_all("a") if a["href"].startswith("/o/")]
    assert labels == sorted(labels)
    # A user whose roles grant no object sees none of them.
    from tests.core.data.conftest import MARK

    marketing = page(client_as(demo_app, MARK).get("/")).find("nav", id="site-nav")
    marketing_hrefs = {a["href"] for a in marketing.find_all("a")}
    assert "/o/accounts" in marketing_hrefs and "/o/activities" not in marketing_hrefs


def test_a_rep_sees_only_their_teams_records_in_lists_and_lookups(demo_app):
    theirs = create(demo_app, ADMIN, "accounts", {"name": "Acme Headquarters"})
    mine = create(demo_app, SAM, "accounts", {"name": "Acme Local"})
    sam = client_as(demo_app, SAM)
    assert row_ids(sam.get("/o/accounts")) == [mine]
    assert row_ids(sam.get(f"/o/accounts?id={theirs}")) == []
    found = sam.get("/o/accounts/lookup?q=acme", headers={"Accept": "application/json"})
    assert found.get_json()["data"] == [{"id": mine, "name": "Acme Local"}]
    by_number = sam.get(f"/o/accounts/lookup?q={theirs}&format=json").get_json()
    assert by_number["data"] == []
    lookup_page = sam.get("/o/accounts/lookup?q=acme").get_data(as_text=True)
    assert "Acme Local" in lookup_page and "Acme Headquarters" not in lookup_page
    assert sam.get(f"/o/accounts/{theirs}").status_code == 404
    # The administrator sees both, so the checks above can fail.
    admin = client_as(demo_app, ADMIN)
    assert sorted(row_ids(admin.get("/o/accounts"))) == sorted([theirs, mine])


def test_bulk_owner_change_reports_each_refused_record(demo_app):
    own = [create(demo_app, MARIA, "accounts", {"name": f"Maria {n}"}) for n in range(2)]
    outside = create(demo_app, ADMIN, "accounts", {"name": "Admin's"})
    maria = client_as(demo_app, MARIA)
    sam_id = user_id(demo_app, SAM)
    done = post(
        maria,
        "/o/accounts/bulk",
        [("action", "owner"), ("owner", sam_id), *[("ids", i) for i in [*own, outside]]],
    )
    assert done.status_code == 200
    result = page(done).find("section", id="bulk-result")
    assert "Gave 2 of 3 to Sam Sales" in result.text
    assert (
        "does not exist or is not visible to you" in result.find("ul", class_="bulk-failures").text
    )
    assert [stored(demo_app, "accounts", i)["owner"] for i in own] == [sam_id, sam_id]
    assert stored(demo_app, "accounts", outside)["owner"] == user_id(demo_app, ADMIN)

    # A rep may not give records to someone outside their scope.
    sams = create(demo_app, SAM, "accounts", {"name": "Sam's"})
    sam = client_as(demo_app, SAM)
    refused = post(
        sam,
        "/o/accounts/bulk",
        {"action": "owner", "owner": user_id(demo_app, ADMIN), "ids": sams},
    )
    assert "may not give records to that owner" in page(refused).find("section").text
    assert stored(demo_app, "accounts", sams)["owner"] == user_id(demo_app, SAM)


def test_bulk_delete_confirms_then_deletes_only_records_in_scope(demo_app):
    own = create(demo_app, MARIA, "accounts", {"name": "Maria's"})
    outside = create(demo_app, ADMIN, "accounts", {"name": "Admin's"})
    maria = client_as(demo_app, MARIA)
    ask = post(maria, "/o/accounts/bulk", [("action", "delete"), ("ids", own), ("ids", outside)])
    assert ask.status_code == 200
    confirm = page(ask)
    # The confirmation names only what Maria can see, and nothing is deleted yet.
    assert confirm.find("h1").text == "Delete 1 account?"
    assert "Admin's" not in ask.get_data(as_text=True)
    assert stored(demo_app, "accounts", own) is not None

    done = post(
        maria,
        "/o/accounts/bulk",
        [("action", "delete"), ("confirm", "yes"), ("ids", own), ("ids", outside)],
    )
    assert "Deleted 1 of 2" in page(done).find("h1").text
    assert stored(demo_app, "accounts", own) is None
    assert stored(demo_app, "accounts", outside) is not None

    # A sales rep may not delete at all: refused before anything happens.
    sams = create(demo_app, SAM, "accounts", {"name": "Sam's"})
    sam = client_as(demo_app, SAM)
    refused = post(sam, "/o/accounts/bulk", {"action": "delete", "confirm": "yes", "ids": sams})
    assert refused.status_code == 403
    assert stored(demo_app, "accounts", sams) is not None
    nothing = post(maria, "/o/accounts/bulk", {"action": "delete"})
    assert nothing.status_code == 400
    assert "Select at least one record" in nothing.get_data(as_text=True)


def test_saved_views_belong_to_one_user(demo_app):
    seed(demo_app, MARIA)
    maria = client_as(demo_app, MARIA)
    saved = post(
        maria,
        "/o/accounts/views",
        {"name": "Banks", "query": "industry=Banking&sort=-name&cursor=abc"},
    )
    assert saved.status_code == 302
    assert "view=" in saved.headers["Location"] and "cursor" not in saved.headers["Location"]
    listed = maria.get(saved.headers["Location"])
    assert names_in(listed) == ["Cobalt Bank", "Acme Bank"]
    select = page(listed).find("select", id="list-view")
    view_id = next(o["value"] for o in select.find_all("option") if o.text == "Banks")
    # Choosing the view opens its list.
    opened = maria.get(f"/o/accounts?view={view_id}")
    assert opened.status_code == 302
    query = opened.headers["Location"].split("?", 1)[1]
    assert [(f.path, f.value) for f in parse_list_params(_pairs(query)).filters] == [
        ("industry", "Banking")
    ]

    sam = client_as(demo_app, SAM)
    assert "Banks" not in sam.get("/o/accounts").get_data(as_text=True)
    assert sam.get(f"/o/accounts?view={view_id}").status_code == 404
    assert post(sam, f"/o/accounts/views/{view_id}/delete", {}).status_code == 404
    assert "Banks" in maria.get("/o/accounts").get_data(as_text=True)

    deleted = post(maria, f"/o/accounts/views/{view_id}/delete", {})
    assert deleted.status_code == 302
    assert page(maria.get("/o/accounts")).find_all("select", id="list-view") == []

    # A view of the whole list opens in place (no redirect to itself).
    everything = post(maria, "/o/accounts/views", {"name": "Everything", "query": ""})
    opened = maria.get(everything.headers["Location"])
    assert opened.status_code == 200 and len(row_ids(opened)) == len(ACCOUNTS)


def test_bulk_merge_opens_the_merge_screen(demo_app):
    ids = list(seed(demo_app).values())[:2]
    admin = client_as(demo_app, ADMIN)
    chosen = post(admin, "/o/accounts/bulk", [("action", "merge"), *[("ids", i) for i in ids]])
    assert chosen.status_code == 303
    assert chosen.headers["Location"].startswith("/o/accounts/merge?ids=")
    assert admin.get(chosen.headers["Location"]).status_code == 200


def _pairs(query: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(query)


def test_export_links_keep_the_lists_filters(demo_app):
    seed(demo_app)
    admin = client_as(demo_app, ADMIN)
    listed = page(admin.get("/o/accounts?industry=Banking&sort=-name&cursor=x&partial=rows"))
    links = {a.text: a["href"] for a in listed.find_all("a", data_export=True)}
    assert links == {
        "CSV": "/o/accounts/export.csv?industry=Banking&sort=-name",
        "JSON": "/o/accounts/export.json?industry=Banking&sort=-name",
    }
    exported = admin.get(links["CSV"]).get_data(as_text=True)
    assert "Cobalt Bank" in exported and "Delta Health" not in exported
    # A sales rep may not export: no links.
    sam = page(client_as(demo_app, SAM).get("/o/accounts"))
    assert sam.find_all("a", data_export=True) == []
