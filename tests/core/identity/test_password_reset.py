"""Reset and invitation links by email, against a real SMTP server run in-process."""

from __future__ import annotations

import email
import email.policy
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyotp
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from bastion import password_tokens
from bastion.config import load_settings
from bastion.credentials import force_password_reset
from bastion.db import db
from bastion.mail import MailError, send_mail
from bastion.mfa import encrypt_secret
from bastion.models import PasswordToken, User, utcnow
from bastion.web.passwords import wait_for_background_jobs
from tests.conftest import FAST_HASHING, csrf_token, dispose, make_app, sign_in
from tests.core.identity.conftest import add_user, logged_text

PUBLIC_URL = "https://crm.example.test"
EMAIL = "robin@example.com"
PASSWORD = "a long enough test password"
NEW_PASSWORD = "seven blue herons at dawn"
LINK_RE = re.compile(re.escape(PUBLIC_URL) + r"/password/reset/([A-Za-z0-9_-]+)")
FORGOT_ANSWER = "If an account exists for that address, we have sent a link"


@dataclass
class Mailbox:
    """What the in-process SMTP server received."""

    messages: list[email.message.EmailMessage] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd calls it by this name
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.arrived:
            self.messages.append(message)
            self.recipients.append(list(envelope.rcpt_tos))
            self.arrived.notify_all()
        return "250 Message accepted"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[email.message.EmailMessage]:
        """Reset mails leave in the background: wait until ``count`` have arrived."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.messages) >= count, timeout=timeout)
            assert len(self.messages) >= count, f"{len(self.messages)} of {count} mails arrived"
            return list(self.messages)

    def link(self, index: int = -1) -> str:
        body = self.messages[index].get_content()
        match = LINK_RE.search(body)
        assert match, body
        return match.group(0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


def mail_settings(data_dir, database_url, port: int, **extra: str):
    overrides = dict(
        FAST_HASHING,
        smtp_host="127.0.0.1",
        smtp_port=str(port),
        smtp_security="none",
        public_url=PUBLIC_URL,
        mail_from="bastion@crm.example.test",
        **extra,
    )
    if database_url:
        overrides["database_url"] = database_url
    return load_settings(data_dir, environ={}, overrides=overrides)


@pytest.fixture
def mail_app(data_dir, database_url, mailbox):
    application = make_app(mail_settings(data_dir, database_url, mailbox[1]))
    yield application
    wait_for_background_jobs()  # reset requests are handled in threads
    dispose(application)


@pytest.fixture
def box(mailbox) -> Mailbox:
    return mailbox[0]


def ask_for_link(client, address: str):
    token = csrf_token(client, "/password/forgot")
    return client.post("/password/forgot", data={"csrf_token": token, "email": address})


def set_password(client, path: str, new: str, confirm: str | None = None):
    # A refused link shows no form: take the session's CSRF token from another page.
    page = client.get(path)
    token = csrf_token(client, path if page.status_code == 200 else "/password/forgot")
    return client.post(
        path,
        data={
            "csrf_token": token,
            "new_password": new,
            "new_password_confirm": new if confirm is None else confirm,
        },
    )


def issued_links(app) -> int:
    with app.app_context():
        return len(db.session.scalars(select(PasswordToken)).all())


def path_of(link: str) -> str:
    return link.removeprefix(PUBLIC_URL)


# --- Without mail ------------------------------------------------------------------------


def test_without_mail_the_page_says_ask_your_administrator(app, client):
    page = client.get("/password/forgot")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Ask your administrator to reset your password." in text
    assert "<form" not in text.split('id="forgot-title"', 1)[1]
    assert "Forgot your password?" not in client.get("/login").get_data(as_text=True)


def test_send_mail_refuses_without_configuration(app):
    with app.app_context(), pytest.raises(MailError, match="Mail is not configured"):
        send_mail("someone@example.com", "Hello", "Body")


def test_an_unreachable_mail_server_is_a_mail_error(data_dir, database_url):
    settings = mail_settings(data_dir, database_url, free_port())
    with pytest.raises(MailError, match="did not accept the message"):
        send_mail("someone@example.com", "Hello", "Body", settings=settings)


# --- Reset by email ----------------------------------------------------------------------


def test_sign_in_page_offers_the_link_when_mail_is_on(mail_app):
    page = mail_app.test_client().get("/login").get_data(as_text=True)
    assert 'href="/password/forgot"' in page


def test_the_emailed_link_works_once(mail_app, box):
    user_id = add_user(mail_app, EMAIL, PASSWORD)
    signed_in = mail_app.test_client()
    assert sign_in(signed_in, EMAIL, PASSWORD).status_code == 302

    client = mail_app.test_client()
    response = ask_for_link(client, EMAIL)
    assert response.status_code == 303
    assert FORGOT_ANSWER in client.get(response.headers["Location"]).get_data(as_text=True)

    [message] = box.wait_for(1)
    assert box.recipients == [[EMAIL]]
    assert message["Subject"] == "Reset your Bastion password"
    assert message["From"] == "bastion@crm.example.test"
    link = box.link()
    assert link.startswith(f"{PUBLIC_URL}/password/reset/")

    page = client.get(path_of(link))
    assert page.status_code == 200
    assert "Choose a new password" in page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"

    response = set_password(client, path_of(link), NEW_PASSWORD)
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/login")
    assert "Your password is set. Sign in with it." in client.get("/login").get_data(as_text=True)
    # It signed nobody in, and every session of the user ended.
    assert client.get("/account/password").status_code == 302
    assert "/login" in signed_in.get("/").headers.get("Location", "")

    assert sign_in(mail_app.test_client(), EMAIL, PASSWORD).status_code != 302
    assert sign_in(mail_app.test_client(), EMAIL, NEW_PASSWORD).status_code == 302

    # A second use is refused, with a way forward.
    again = mail_app.test_client()
    refused = set_password(again, path_of(link), "another fine passphrase")
    assert refused.status_code == 410
    text = refused.get_data(as_text=True)
    assert "no longer valid" in text
    assert 'href="/password/forgot"' in text
    assert again.get(path_of(link)).status_code == 410
    assert sign_in(mail_app.test_client(), EMAIL, NEW_PASSWORD).status_code == 302
    with mail_app.app_context():
        row = db.session.scalar(select(PasswordToken).where(PasswordToken.user_id == user_id))
        # Only the digest is stored, never the token from the link.
        assert row.id != link.rsplit("/", 1)[1]
        assert row.used_at is not None


def test_racing_uses_of_one_link_let_exactly_one_through(mail_app, box):
    add_user(mail_app, EMAIL, PASSWORD)
    ask_for_link(mail_app.test_client(), EMAIL)
    box.wait_for(1)
    path = path_of(box.link())
    clients = [mail_app.test_client() for _ in range(8)]
    forms = [
        {
            "csrf_token": csrf_token(client, path),
            "new_password": f"racing passphrase number {n}",
            "new_password_confirm": f"racing passphrase number {n}",
        }
        for n, client in enumerate(clients)
    ]
    start = threading.Barrier(len(clients))
    outcomes: list[tuple[int, str]] = []

    def use(client, form) -> None:
        start.wait()
        outcomes.append((client.post(path, data=form).status_code, form["new_password"]))

    threads = [threading.Thread(target=use, args=pair) for pair in zip(clients, forms, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(status for status, _ in outcomes) == [302] + [410] * (len(clients) - 1)
    [winner] = [password for status, password in outcomes if status == 302]
    loser = next(password for status, password in outcomes if status != 302)
    assert sign_in(mail_app.test_client(), EMAIL, loser).status_code != 302
    assert sign_in(mail_app.test_client(), EMAIL, winner).status_code == 302


def test_an_expired_link_is_refused(mail_app, box, monkeypatch):
    add_user(mail_app, EMAIL, PASSWORD)
    client = mail_app.test_client()
    ask_for_link(client, EMAIL)
    box.wait_for(1)
    path = path_of(box.link())
    assert client.get(path).status_code == 200

    later = int(time.time()) + 30 * 60 + 1  # password_reset_minutes is 30
    monkeypatch.setattr(password_tokens, "_now", lambda: later)
    assert client.get(path).status_code == 410
    data = {
        "csrf_token": csrf_token(client, "/password/forgot"),
        "new_password": NEW_PASSWORD,
        "new_password_confirm": NEW_PASSWORD,
    }
    assert client.post(path, data=data).status_code == 410
    assert sign_in(mail_app.test_client(), EMAIL, PASSWORD).status_code == 302


def test_a_newer_link_replaces_the_older_one(mail_app, box):
    add_user(mail_app, EMAIL, PASSWORD)
    client = mail_app.test_client()
    ask_for_link(client, EMAIL)
    box.wait_for(1)
    ask_for_link(client, EMAIL)
    box.wait_for(2)
    first, second = path_of(box.link(0)), path_of(box.link(1))
    assert first != second
    assert client.get(first).status_code == 410
    assert client.get(second).status_code == 200


def test_a_refused_password_leaves_the_link_usable(mail_app, box):
    add_user(mail_app, EMAIL, PASSWORD)
    client = mail_app.test_client()
    ask_for_link(client, EMAIL)
    box.wait_for(1)
    path = path_of(box.link())
    response = set_password(client, path, "password1234")
    assert response.status_code == 422
    assert "commonly used" in response.get_data(as_text=True)
    assert set_password(client, path, NEW_PASSWORD, confirm="something else").status_code == 422
    assert set_password(client, path, NEW_PASSWORD).status_code == 302


def test_unknown_addresses_get_the_same_answer_and_no_mail(mail_app, box):
    add_user(mail_app, EMAIL, PASSWORD)
    add_user(mail_app, "gone@example.com", PASSWORD)
    with mail_app.app_context():
        db.session.scalar(select(User).where(User.email == "gone@example.com")).active = False
        db.session.commit()

    answers = []
    for address in ("nobody@example.com", "gone@example.com", "not an email", EMAIL):
        client = mail_app.test_client()
        response = ask_for_link(client, address)
        page = client.get(response.headers["Location"])
        text = page.get_data(as_text=True)
        flashes = re.search(r'<div id="flashes".*?</div>', text, re.S).group(0)
        answers.append((response.status_code, response.headers["Location"], flashes))
    assert len(set(answers)) == 1, answers
    assert FORGOT_ANSWER in answers[0][2]

    # The mail for the real account (asked for last) arrives; nothing else was sent.
    box.wait_for(1)
    assert box.recipients == [[EMAIL]]


def test_reset_mails_are_limited_per_account(mail_app, box):
    add_user(mail_app, EMAIL, PASSWORD)
    for _ in range(5):
        response = ask_for_link(mail_app.test_client(), EMAIL)
        assert response.status_code == 303  # the answer never changes
    box.wait_for(3)
    # A link is issued only when one is mailed: three, not five.
    assert issued_links(mail_app) == 3


def test_reset_mails_are_limited_per_client_address(mail_app, box):
    for n in range(7):
        add_user(mail_app, f"user{n}@example.com", PASSWORD)
    for n in range(7):
        assert ask_for_link(mail_app.test_client(), f"user{n}@example.com").status_code == 303
    box.wait_for(5)
    assert issued_links(mail_app) == 5


def test_a_reset_never_bypasses_mfa(mail_app, box):
    user_id = add_user(mail_app, EMAIL, PASSWORD)
    secret = pyotp.random_base32()
    with mail_app.app_context():
        user = db.session.get(User, user_id)
        user.mfa_secret = encrypt_secret(user_id, secret)
        user.mfa_enabled_at = utcnow()
        db.session.commit()

    client = mail_app.test_client()
    ask_for_link(client, EMAIL)
    box.wait_for(1)
    assert set_password(client, path_of(box.link()), NEW_PASSWORD).status_code == 302

    response = sign_in(client, EMAIL, NEW_PASSWORD)
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/login/code")
    # Without the code there is no way in.
    assert "/login" in client.get("/").headers.get("Location", "")
    token = csrf_token(client, "/login/code")
    response = client.post(
        "/login/code", data={"csrf_token": token, "code": pyotp.TOTP(secret).now()}
    )
    assert response.status_code == 302
    assert client.get("/").status_code == 200


# --- Invitations and forced resets -------------------------------------------------------


def test_an_invitation_link_sets_the_first_password(mail_app, box):
    user_id = add_user(mail_app, "newbie@example.com", PASSWORD)
    with mail_app.app_context():
        user = db.session.get(User, user_id)
        user.password_hash = "!"  # an invited user has no usable password yet
        db.session.commit()
        link = password_tokens.send_invitation(user)
    [message] = box.wait_for(1)
    assert box.link() == link
    assert message["Subject"] == "Your Bastion account"

    client = mail_app.test_client()
    page = client.get(path_of(link))
    assert "Choose your password" in page.get_data(as_text=True)
    assert set_password(client, path_of(link), NEW_PASSWORD).status_code == 302
    assert sign_in(client, "newbie@example.com", NEW_PASSWORD).status_code == 302


def test_without_mail_an_invitation_link_is_returned_for_the_administrator(data_dir, database_url):
    overrides = dict(FAST_HASHING, public_url=PUBLIC_URL)
    if database_url:
        overrides["database_url"] = database_url
    app = make_app(load_settings(data_dir, environ={}, overrides=overrides))
    try:
        user_id = add_user(app, "newbie@example.com", PASSWORD)
        with app.app_context():
            link = password_tokens.send_invitation(db.session.get(User, user_id))
        assert LINK_RE.fullmatch(link)
        client = app.test_client()
        assert set_password(client, path_of(link), NEW_PASSWORD).status_code == 302
        assert sign_in(client, "newbie@example.com", NEW_PASSWORD).status_code == 302
    finally:
        dispose(app)


def test_a_forced_reset_emails_a_link(mail_app, box):
    user_id = add_user(mail_app, EMAIL, PASSWORD)
    with mail_app.app_context():
        assert force_password_reset(db.session.get(User, user_id), actor="user:1") is None
    [message] = box.wait_for(1)
    assert "An administrator asked you" in message.get_content()
    client = mail_app.test_client()
    assert set_password(client, path_of(box.link()), NEW_PASSWORD).status_code == 302
    # Setting it through the link also lifts the forced change.
    assert sign_in(client, EMAIL, NEW_PASSWORD).status_code == 302
    assert client.get("/").status_code == 200


def test_the_link_is_built_from_public_url_not_the_host_header(mail_app, box):
    add_user(mail_app, EMAIL, PASSWORD)
    client = mail_app.test_client()
    evil = {"Host": "evil.example.net"}
    page = client.get("/password/forgot", headers=evil).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post(
        "/password/forgot", data={"csrf_token": token, "email": EMAIL}, headers=evil
    )
    assert response.status_code == 303
    box.wait_for(1)
    body = box.messages[0].get_content()
    assert "evil.example.net" not in body
    assert box.link().startswith(PUBLIC_URL)


def test_tokens_stay_out_of_the_access_log(mail_app, box, caplog):
    add_user(mail_app, EMAIL, PASSWORD)
    client = mail_app.test_client()
    ask_for_link(client, EMAIL)
    box.wait_for(1)
    secret = box.link().rsplit("/", 1)[1]
    with caplog.at_level("INFO"):
        client.get(path_of(box.link()))
    assert "/password/reset/[token]" in caplog.text
    assert secret not in logged_text(caplog)
