"""The pipelines settings page: create a pipeline (with the standard stages), add,
rename, reorder and delete stages, mark the default; refusals keep what was typed."""

from __future__ import annotations

from decimal import Decimal

from tests.conftest import csrf_token
from tests.plugins.sales.conftest import ADMIN, SAM, client_as, service_as
from tests.plugins.sales.test_pipelines_rules import create_opportunity

PAGE = "/sales/settings/pipelines"


def post(client, path: str, **data):
    return client.post(path, data={"csrf_token": csrf_token(client, PAGE), **data})


def pipelines_and_stages(app) -> dict:
    from bastion.api import Filter

    with service_as(app, None) as service:
        found = {}
        for pipeline in service.query("pipelines", sort="id").records:
            stages = service.query(
                "pipeline_stages",
                filters=[Filter("pipeline", "eq", pipeline.id)],
                sort="position,id",
            ).records
            found[pipeline.values["name"]] = {
                "id": pipeline.id,
                "version": pipeline.version,
                "is_default": pipeline.values["is_default"],
                "stages": [(s.values["name"], s.id, s.version, s.values) for s in stages],
            }
        return found


def test_only_configurers_reach_the_page(sales_app):
    assert client_as(sales_app, SAM).get(PAGE).status_code == 403
    assert client_as(sales_app, ADMIN).get(PAGE).status_code == 200


def test_create_a_pipeline_with_standard_stages_and_edit_them(sales_app):
    admin = client_as(sales_app, ADMIN)
    response = post(admin, PAGE, name="Enterprise", standard_stages="on", is_default="on")
    assert response.status_code == 303
    found = pipelines_and_stages(sales_app)["Enterprise"]
    assert found["is_default"] is True
    names = [name for name, *_ in found["stages"]]
    assert names[0] == "Qualification" and names[-2:] == ["Closed won", "Closed lost"]
    page = admin.get(PAGE).get_data(as_text=True)
    assert "Enterprise" in page and "Closed won" in page

    # Add a stage: it goes last.
    response = post(
        admin,
        f"{PAGE}/{found['id']}/stages",
        name="Legal review",
        probability="80",
        outcome="open",
        forecast_category="commit",
    )
    assert response.status_code == 303
    stages = pipelines_and_stages(sales_app)["Enterprise"]["stages"]
    assert stages[-1][0] == "Legal review"

    # Move it up twice, rename it and change its probability.
    legal_id = stages[-1][1]
    for _ in range(2):
        assert (
            post(admin, f"/sales/settings/stages/{legal_id}/move", direction="up").status_code
            == 303
        )
    stages = pipelines_and_stages(sales_app)["Enterprise"]["stages"]
    assert [name for name, *_ in stages][-3:] == ["Legal review", "Closed won", "Closed lost"]
    legal = next(s for s in stages if s[1] == legal_id)
    response = post(
        admin,
        f"/sales/settings/stages/{legal_id}",
        version=str(legal[2]),
        name="Legal",
        probability="85",
        outcome="open",
        forecast_category="commit",
    )
    assert response.status_code == 303
    legal = next(
        s for s in pipelines_and_stages(sales_app)["Enterprise"]["stages"] if s[1] == legal_id
    )
    assert legal[0] == "Legal" and legal[3]["probability"] == Decimal(85)


def test_a_refused_stage_form_keeps_what_was_typed(sales_app):
    admin = client_as(sales_app, ADMIN)
    post(admin, PAGE, name="Small deals", standard_stages="on")
    found = pipelines_and_stages(sales_app)["Small deals"]
    response = post(
        admin,
        f"{PAGE}/{found['id']}/stages",
        name="Typed name",
        probability="150",
        outcome="open",
    )
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'value="Typed name"' in html and 'value="150"' in html
    won = next(s for s in found["stages"] if s[0] == "Closed won")
    response = post(
        admin,
        f"/sales/settings/stages/{won[1]}",
        version=str(won[2]),
        name="Closed won",
        probability="40",
        outcome="won",
        forecast_category="commit",
    )
    assert response.status_code == 422
    assert "100" in response.get_data(as_text=True)


def test_marking_another_default_clears_the_first(sales_app):
    admin = client_as(sales_app, ADMIN)
    post(admin, PAGE, name="One", standard_stages="on", is_default="on")
    post(admin, PAGE, name="Two", standard_stages="on")
    two = pipelines_and_stages(sales_app)["Two"]
    response = post(
        admin,
        f"{PAGE}/{two['id']}",
        version=str(two["version"]),
        name="Two",
        is_default="on",
        active="on",
    )
    assert response.status_code == 303
    found = pipelines_and_stages(sales_app)
    assert found["Two"]["is_default"] is True and found["One"]["is_default"] is False


def test_a_stage_in_use_is_not_deleted(sales_app):
    admin = client_as(sales_app, ADMIN)
    post(admin, PAGE, name="Main", standard_stages="on", is_default="on")
    create_opportunity(sales_app, SAM)
    first = pipelines_and_stages(sales_app)["Main"]["stages"][0]
    response = post(admin, f"/sales/settings/stages/{first[1]}/delete", version=str(first[2]))
    assert response.status_code in (409, 422)
    assert len(pipelines_and_stages(sales_app)["Main"]["stages"]) == 6
    unused = pipelines_and_stages(sales_app)["Main"]["stages"][1]
    response = post(admin, f"/sales/settings/stages/{unused[1]}/delete", version=str(unused[2]))
    assert response.status_code == 303
    assert len(pipelines_and_stages(sales_app)["Main"]["stages"]) == 5
