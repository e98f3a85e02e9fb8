"""Gaps an acceptance audit found: auto-numbers as filters and import keys, formula
results of their declared type, bad mapping files on the command line."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from bastion.data.formulas import conform
from tests.core.data.conftest import ADMIN, bearer, client_as

PROJECTS = {
    "name": "projects",
    "label": "Project",
    "label_plural": "Projects",
    "fields": [
        {"name": "title", "label": "Title", "type": "text", "required": True},
        {"name": "seats", "label": "Seats", "type": "integer"},
        {"name": "rate", "label": "Rate", "type": "decimal", "scale": 4},
        {"name": "tags", "label": "Tags", "type": "multi_picklist", "options": ["a", "b"]},
        {"name": "num", "label": "Num", "type": "auto_number", "format": "PRJ-{0000}"},
        {
            "name": "mixed",
            "label": "Mixed",
            "type": "formula",
            "formula": "length(tags) + title",
            "formula_type": "integer",
        },
        {
            "name": "seats_text",
            "label": "Seats text",
            "type": "formula",
            "formula": "seats + 1",
            "formula_type": "text",
        },
        {
            "name": "third",
            "label": "Third",
            "type": "formula",
            "formula": "rate / 3",
            "formula_type": "decimal",
        },
        {
            "name": "half",
            "label": "Half",
            "type": "formula",
            "formula": "seats / 2",
            "formula_type": "integer",
        },
        {
            "name": "big",
            "label": "Big",
            "type": "formula",
            "formula": "seats > 3",
            "formula_type": "boolean",
        },
    ],
}


@pytest.fixture
def projects(demo_app):
    """The projects object with three records, PRJ-0001 to PRJ-0003; the admin's headers."""
    api = demo_app.test_client()
    admin = bearer(demo_app, ADMIN)
    response = api.post("/api/v1/meta", headers=admin, json=PROJECTS)
    assert response.status_code == 201, response.get_data(as_text=True)
    for n, title in enumerate(["Alpha", "Beta", "Gamma"], start=1):
        body = {"title": title, "seats": n + 4, "rate": "0.2500", "tags": ["a", "b"]}
        response = api.post("/api/v1/projects", headers=admin, json=body)
        assert response.status_code == 201, response.get_data(as_text=True)
    return api, admin


def _titles(api, headers, query: str) -> list[str]:
    response = api.get(f"/api/v1/projects?{query}&sort=id", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return [item["title"] for item in response.get_json()["data"]]


# --------------------------------------------------------------------------- auto-numbers


def test_an_auto_number_filters_with_every_comparison(projects):
    api, admin = projects
    assert _titles(api, admin, "num=PRJ-0002") == ["Beta"]
    assert _titles(api, admin, "num=prj-0002") == []  # compared as stored, like text
    assert _titles(api, admin, "num__in=PRJ-0001,PRJ-0003") == ["Alpha", "Gamma"]
    assert _titles(api, admin, "num__ne=PRJ-0001") == ["Beta", "Gamma"]
    assert _titles(api, admin, "num__gt=PRJ-0001") == ["Beta", "Gamma"]
    assert _titles(api, admin, "num__lte=PRJ-0002") == ["Alpha", "Beta"]
    assert _titles(api, admin, "num__startswith=prj-000") == ["Alpha", "Beta", "Gamma"]
    assert _titles(api, admin, "num__empty=true") == []


def test_an_auto_number_is_still_never_written(projects):
    api, admin = projects
    created = api.post("/api/v1/projects", headers=admin, json={"title": "D", "num": "X-1"})
    assert created.status_code == 422, created.get_data(as_text=True)
    assert "num" in created.get_json()["errors"]
    record = api.get("/api/v1/projects?num=PRJ-0001", headers=admin).get_json()["data"][0]
    changed = api.patch(
        f"/api/v1/projects/{record['id']}",
        headers=admin,
        json={"num": "PRJ-0009", "version": record["version"]},
    )
    assert changed.status_code == 422, changed.get_data(as_text=True)
    assert "num" in changed.get_json()["errors"]
    assert _titles(api, admin, "num=PRJ-0001") == ["Alpha"]


def test_an_auto_number_filter_refuses_what_is_not_text(projects):
    api, admin = projects
    response = api.get("/api/v1/projects?num=a%00b", headers=admin)
    assert response.status_code == 400, response.get_data(as_text=True)


def _write(tmp_path: Path, name: str, data: str | bytes) -> str:
    path = tmp_path / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return str(path)


def test_an_auto_number_is_an_import_key(projects, cli, tmp_path):
    api, admin = projects
    text = "num,title\nPRJ-0002,Beta renamed\n,Delta\n"
    result = cli("import", "projects", _write(tmp_path, "p.csv", text), "--key", "num")
    assert result.exit_code == 0, result.output
    assert "1 created" in result.output and "1 updated" in result.output, result.output
    assert _titles(api, admin, "num=PRJ-0002") == ["Beta renamed"]
    assert _titles(api, admin, "num=PRJ-0004") == ["Delta"]


# --------------------------------------------------------------------------- formulas


def _project(api, headers, num: str) -> dict:
    response = api.get(f"/api/v1/projects?num={num}", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["data"][0]


def test_formula_results_have_their_declared_type_in_the_api(projects):
    api, admin = projects
    alpha, gamma = _project(api, admin, "PRJ-0001"), _project(api, admin, "PRJ-0003")
    assert alpha["mixed"] is None  # "10Alpha" is no whole number: empty, not text
    assert alpha["seats_text"] == "6" and gamma["seats_text"] == "8"
    assert alpha["third"] == "0.08"  # 0.25 / 3 to the scale, not 28 digits
    assert alpha["half"] == 3 and gamma["half"] == 4  # 2.5 and 3.5 rounded half up
    assert alpha["big"] is True
    one = api.get(f"/api/v1/projects/{alpha['id']}", headers=admin).get_json()
    assert {k: one[k] for k in ("mixed", "seats_text", "third", "half", "big")} == {
        "mixed": None,
        "seats_text": "6",
        "third": "0.08",
        "half": 3,
        "big": True,
    }


def test_formula_values_match_the_openapi_types(projects):
    api, admin = projects
    document = api.get("/api/v1/openapi.json", headers=admin).get_json()
    props = document["components"]["schemas"]["projects.record"]["properties"]
    record = _project(api, admin, "PRJ-0002")
    python_types = {"string": str, "integer": int, "boolean": bool}
    for name in ("seats_text", "third", "half", "big"):
        schema = json.dumps(props[name])
        declared = [t for t in python_types if f'"{t}"' in schema]
        assert declared, (name, schema)
        assert isinstance(record[name], python_types[declared[0]]), (name, record[name], schema)


def test_the_detail_page_shows_the_converted_formula_values(demo_app, projects):
    api, admin = projects
    alpha = _project(api, admin, "PRJ-0001")
    page = client_as(demo_app, ADMIN).get(f"/o/projects/{alpha['id']}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "0.08" in html and "0.0833" not in html
    assert "10Alpha" not in html and "Alpha" in html


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        ("2div", "integer", None),
        (Decimal("2.5"), "integer", 3),
        (Decimal("-2.5"), "integer", -3),
        (7.0, "integer", 7),
        ("42", "integer", 42),
        (True, "integer", None),
        (Decimal("1E+30"), "integer", None),
        (Decimal("2.675"), "decimal", Decimal("2.68")),
        (Decimal(1) / Decimal(3), "decimal", Decimal("0.33")),
        (5, "decimal", Decimal("5.00")),
        ("abc", "decimal", None),
        (Decimal("Infinity"), "decimal", None),
        (6, "text", "6"),
        (Decimal("1.50"), "text", "1.50"),
        (True, "text", "true"),
        ("  ", "text", None),
        ("yes", "boolean", True),
        (0, "boolean", False),
        ("maybe", "boolean", None),
        ("2026-01-02", "date", date(2026, 1, 2)),
        (datetime(2026, 1, 2, 23, 0, tzinfo=UTC), "date", date(2026, 1, 2)),
        ("soon", "date", None),
        (date(2026, 1, 2), "datetime", datetime(2026, 1, 2, tzinfo=UTC)),
        (12, "datetime", None),
    ],
)
def test_conform_converts_when_sensible_and_empties_otherwise(value, kind, expected):
    result = conform(value, kind)
    assert result == expected and type(result) is type(expected)


def test_a_decimal_formula_uses_the_field_scale():
    assert conform(Decimal("0.123456"), "decimal", 4) == Decimal("0.1235")


# --------------------------------------------------------------------------- mapping files


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not JSON"),
        ('["last_name", "email"]', "A mapping is a JSON object"),
        (b'{"Nom": "last_name", "Pr\xe9nom": "first_name"}', "is not UTF-8"),
    ],
)
def test_a_bad_mapping_file_is_a_one_line_error(demo_app, cli, tmp_path, content, message):
    data = _write(tmp_path, "people.csv", "Nom\nLovelace\n")
    mapping = _write(tmp_path, "mapping.json", content)
    result = cli("import", "contacts", data, "--mapping", mapping)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not a crash
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert "Traceback" not in result.output


def test_a_good_mapping_file_still_imports(demo_app, cli, tmp_path):
    data = _write(tmp_path, "people.csv", "Nom\nLovelace\n")
    mapping = _write(tmp_path, "mapping.json", '{"Nom": "last_name"}')
    result = cli("import", "contacts", data, "--mapping", mapping)
    assert result.exit_code == 0, result.output
    assert "1 created" in result.output, result.output


# --------------------------------------------------------------------------- benchmark


def _bench_data():
    import importlib.util

    path = Path(__file__).parents[2] / "benchmarks" / "bench_data.py"
    spec = importlib.util.spec_from_file_location("bench_data_for_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_import_benchmark_gives_no_rate_from_noise():
    rate = _bench_data().net_rate_text
    assert rate(50, 0.8, 0.79) == "n/a"  # 0.01 s left: noise, not 5,000 rows/s
    assert rate(50, 10.0, 9.5) == "n/a"  # 0.5 s, but 5 % of the run
    assert rate(50_000, 10.0, 1.0) == "5,556"
