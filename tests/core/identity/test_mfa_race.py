"""Single use under concurrency: fifty clients, each past the password step on its own,
submit the same valid TOTP code at once; exactly one is signed in. The same for one
recovery code. Runs on SQLite (the busy timeout queues writers) and PostgreSQL.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import select

from bastion import mfa
from bastion.db import db
from bastion.models import User
from tests.conftest import csrf_token, sign_in
from tests.core.identity.test_mfa import (
    EMAIL,
    PASSWORD,
    clock,  # noqa: F401  (the fixture, shared)
    code_at,
    enrol,
)

CLIENTS = 50


def _race(app, field: str, value: str, clients: int, winners: list | None = None) -> list[int]:
    """Prepare ``clients`` separately signed-in password steps, then post all at once.

    The clients that were signed in are appended to ``winners`` when it is given.
    """
    prepared = []
    for _ in range(clients):
        client = app.test_client()
        response = sign_in(client, EMAIL, PASSWORD)
        assert response.headers["Location"] == "/login/code"
        prepared.append((client, csrf_token(client, "/login/code")))
    barrier = threading.Barrier(clients)
    statuses: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def submit(client, token: str) -> None:
        try:
            barrier.wait(timeout=60)
            response = client.post("/login/code", data={field: value, "csrf_token": token})
            with lock:
                statuses.append(response.status_code)
                if response.status_code == 302 and winners is not None:
                    winners.append(client)
        except BaseException as exc:  # reported below, never lost in the thread
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=submit, args=pair) for pair in prepared]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not errors, errors
    assert len(statuses) == clients
    return statuses


def _enrolled_user(app, user_factory, clock) -> tuple[str, list[str]]:  # noqa: F811  (the fixture's value)
    user_factory(EMAIL, PASSWORD)
    client = app.test_client()
    sign_in(client, EMAIL, PASSWORD)
    secret, codes = enrol(client, clock)
    clock.advance(30)
    return secret, codes


def test_fifty_concurrent_submissions_of_one_code_sign_in_exactly_once(
    app,
    user_factory,
    clock,  # noqa: F811
    caplog,
):
    secret, _codes = _enrolled_user(app, user_factory, clock)
    code = code_at(secret, clock.t)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="bastion.audit"):
        winners: list = []
        statuses = _race(app, "code", code, CLIENTS, winners)
    assert statuses.count(302) == 1, statuses
    # The others were refused: as a replay (401) or by the per-user delay it caused (429).
    assert set(statuses) - {302} <= {401, 429}
    replays = [r for r in caplog.records if getattr(r, "action", "") == "auth.mfa_replay_refused"]
    assert replays, "the refused replays are audited"
    signed_in = [r for r in caplog.records if getattr(r, "action", "") == "auth.sign_in"]
    assert [r.outcome for r in signed_in] == ["success"]
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == EMAIL))
        assert user.mfa_last_step == int(clock.t // 30)
        replay_noted = user.mfa_replay_at is not None
    # The user hears of the refused replays: at this sign-in for those refused before the
    # winner finished, at the next one for those refused after (the mark is set again).
    warned_now = "tried to reuse" in winners[0].get("/").get_data(as_text=True)
    assert replay_noted or warned_now


def test_concurrent_submissions_of_one_recovery_code_sign_in_exactly_once(
    app,
    user_factory,
    clock,  # noqa: F811
):
    _secret, codes = _enrolled_user(app, user_factory, clock)
    statuses = _race(app, "recovery_code", codes[0], 10)
    assert statuses.count(302) == 1, statuses
    assert set(statuses) - {302} <= {401, 429}


def test_fifty_concurrent_verifications_of_one_code_accept_exactly_one(
    app,
    user_factory,
    clock,  # noqa: F811
):
    """The replay guard itself, without the throttle in front: fifty threads call
    mfa.verify_totp with the same valid code at once; one is accepted, the rest are
    replays. (Through the pages, the per-user throttle lets only a few reach it.)"""
    secret, _codes = _enrolled_user(app, user_factory, clock)
    code = code_at(secret, clock.t)
    barrier = threading.Barrier(CLIENTS)
    results: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def verify() -> None:
        try:
            with app.app_context():
                user = db.session.scalar(select(User).where(User.email == EMAIL))
                db.session.commit()  # hand the connection back while waiting at the barrier
                barrier.wait(timeout=60)
                result = mfa.verify_totp(user, code)
                db.session.remove()
            with lock:
                results.append(result)
        except BaseException as exc:  # reported below, never lost in the thread
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=verify) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not errors, errors
    assert sorted(results) == ["accepted"] + ["replayed"] * (CLIENTS - 1), results
