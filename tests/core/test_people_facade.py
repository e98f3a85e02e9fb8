"""The read-only people facade: users, teams and who manages whom, as plugins see them."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from bastion import api
from bastion.db import db
from bastion.identity import create_user
from bastion.models import Team, User
from tests.conftest import ADMIN_EMAIL


@pytest.fixture
def org(app):
    """Sales (manager Maria, member of it) > North (no manager: Sam, Nina, inactive Olaf)
    and South (manager Sven, not a member); Support (Sofia), unrelated."""
    passwords = app.extensions["bastion.passwords"]
    with app.app_context():

        def user(email, name, team=None, active=True):
            row = create_user(passwords, email=email, password=None, name=name)
            row.active = active
            db.session.flush()
            if team is not None:
                row.team_id = team.id
            return row

        sales = Team(name="Sales")
        support = Team(name="Support")
        db.session.add_all([sales, support])
        db.session.flush()
        north = Team(name="North", parent_id=sales.id)
        south = Team(name="South", parent_id=sales.id)
        db.session.add_all([north, south])
        db.session.flush()
        maria = user("Maria@Example.com", "Maria", sales)
        sam = user("sam@example.com", "Sam", north)
        nina = user("nina@example.com", "Nina", north)
        olaf = user("olaf@example.com", "Olaf", north, active=False)
        sven = user("sven@example.com", "Sven")
        sofia = user("sofia@example.com", "Sofia", support)
        sales.manager_id, south.manager_id = maria.id, sven.id
        db.session.commit()
        ids = {
            "maria": maria.id,
            "sam": sam.id,
            "nina": nina.id,
            "olaf": olaf.id,
            "sven": sven.id,
            "sofia": sofia.id,
            "sales": sales.id,
            "north": north.id,
            "south": south.id,
            "support": support.id,
        }
    return ids


def test_user_info_and_find_by_email(app, org):
    with app.app_context():
        sam = api.user_info(org["sam"])
        assert sam == api.UserInfo(
            org["sam"], "sam@example.com", "Sam", org["north"], "North", True
        )
        assert api.find_user_info("  MARIA@example.COM ").id == org["maria"]
        assert api.find_user_info("nobody@example.com") is None
        assert api.find_user_info("") is None
        assert api.user_info(999_999) is None
        admin = api.find_user_info(ADMIN_EMAIL)
        assert admin.team_id is None and admin.team_name is None
        assert api.user_info(org["olaf"]).active is False


def test_teams_by_name_and_list(app, org):
    with app.app_context():
        teams = api.list_teams()
        assert [t.name for t in teams] == ["Sales", "Support", "North", "South"]
        assert api.team_by_name("South") == api.TeamInfo(
            org["south"], "South", org["sales"], org["sven"]
        )
        assert api.team_by_name("south") is None
        assert api.team_by_name("Nowhere") is None


def test_team_members(app, org):
    with app.app_context():
        ids = lambda users: [u.id for u in users]  # noqa: E731
        assert ids(api.team_members(org["north"])) == [org["sam"], org["nina"]]
        assert ids(api.team_members(org["north"], active_only=False)) == [
            org["sam"],
            org["nina"],
            org["olaf"],
        ]
        # Sven manages South without being a member of it.
        assert api.team_members(org["south"]) == []
        assert ids(api.team_members(org["sales"])) == [org["maria"]]
        assert ids(api.team_members(org["sales"], include_sub_teams=True)) == [
            org["maria"],
            org["sam"],
            org["nina"],
        ]
        assert api.team_members(999_999) == []


def test_manager_of(app, org):
    with app.app_context():
        # North has no manager: the parent team's manager approves.
        assert api.manager_of(org["sam"]).id == org["maria"]
        # Maria manages her own team and Sales has no parent: nobody above her.
        assert api.manager_of(org["maria"]) is None
        # Sven is in no team but manages South: the manager above South.
        assert api.manager_of(org["sven"]).id == org["maria"]
        assert api.manager_of(org["sofia"]) is None
        assert api.manager_of(999_999) is None


def test_manager_of_survives_a_cycle_of_parents(app, org):
    with app.app_context():
        sales = db.session.get(Team, org["sales"])
        sales.parent_id, sales.manager_id = org["north"], None
        db.session.commit()
        assert api.manager_of(org["sam"]) is None


def test_teams_managed_by(app, org):
    with app.app_context():
        assert [t.name for t in api.teams_managed_by(org["maria"])] == ["Sales", "North", "South"]
        assert [t.name for t in api.teams_managed_by(org["sven"])] == ["South"]
        assert api.teams_managed_by(org["sam"]) == []


def test_team_questions_take_one_query_each(app, org):
    with app.app_context():
        statements: list[str] = []

        def count(*_args):
            statements.append("x")

        event.listen(db.engine, "before_cursor_execute", count)
        try:
            db.session.expire_all()
            api.team_members(org["sales"], include_sub_teams=True)
            api.teams_managed_by(org["maria"])
            api.list_teams()
            api.user_info(org["sam"])
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
        assert len(statements) <= 5


def test_manager_of_skips_deactivated_managers(app, org):
    with app.app_context():
        sofia = db.session.get(User, org["sofia"])
        top = Team(name="Top", manager_id=sofia.id)
        db.session.add(top)
        db.session.flush()
        db.session.get(Team, org["sales"]).parent_id = top.id
        db.session.get(User, org["maria"]).active = False
        db.session.commit()
        # Maria (Sales) left: Sam's and Sven's approvals go up to Top's manager.
        assert api.manager_of(org["sam"]).id == org["sofia"]
        assert api.manager_of(org["sven"]).id == org["sofia"]
        sofia.active = False
        db.session.commit()
        assert api.manager_of(org["sam"]) is None


def test_a_teamless_manager_of_several_teams_answers_above_the_top_most(app, org):
    with app.app_context():
        # Sven manages South (under Sales, Maria) and, created later, the top-level Lab.
        db.session.add(Team(name="Lab", manager_id=org["sven"]))
        db.session.commit()
        assert api.manager_of(org["sven"]) is None  # nobody above Lab
        lab = api.team_by_name("Lab")
        db.session.get(Team, lab.id).parent_id = org["south"]  # now Lab is below South
        db.session.commit()
        assert api.manager_of(org["sven"]).id == org["maria"]


def test_users_info_looks_up_many_users_in_one_query(app, org):
    with app.app_context():
        statements: list[str] = []
        listener = lambda *_args: statements.append("x")  # noqa: E731
        event.listen(db.engine, "before_cursor_execute", listener)
        try:
            found = api.users_info([org["sam"], org["olaf"], 999_999, org["sam"]])
        finally:
            event.remove(db.engine, "before_cursor_execute", listener)
        assert len(statements) == 1
        assert set(found) == {org["sam"], org["olaf"]}
        assert found[org["sam"]] == api.user_info(org["sam"])
        assert found[org["olaf"]].active is False
        assert api.users_info([]) == {}
