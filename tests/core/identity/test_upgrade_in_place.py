"""An installation made before identity and access upgrades in place."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from sqlalchemy import select, text

from bastion import schema
from bastion.db import db
from bastion.encryption import CredentialCipher
from bastion.keyfiles import CREDENTIALS_KEY
from bastion.models import Role, User
from bastion.provision import MARKER, prepare_data_dir
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, sign_in
from tests.core.conftest import run_init


def _first_release_installation(settings, app_for):
    """A data directory as version 0.1 left it: schema 0001, no credentials key."""
    prepare_data_dir(settings.data_dir, force=False)
    (settings.secrets_dir / CREDENTIALS_KEY).unlink(missing_ok=True)
    app = app_for(settings)
    with app.app_context():
        config = schema._config()
        with db.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0001")
            connection.execute(
                text(
                    "INSERT INTO users (email, name, password_hash, active, time_zone, locale, "
                    "created_at) VALUES (:e, 'Administrator', :h, :t, 'UTC', 'en', :now)"
                ),
                {
                    "e": ADMIN_EMAIL,
                    "h": app.extensions["bastion.passwords"].hash(ADMIN_PASSWORD),
                    "t": True,
                    "now": datetime.now(UTC),
                },
            )
            connection.execute(
                text(
                    "INSERT INTO roles (name, label, description) "
                    "VALUES ('administrator', 'Administrator', 'Every permission.')"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO role_permissions (role_id, permission) "
                    "SELECT id, '*' FROM roles WHERE name = 'administrator'"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO user_roles (user_id, role_id) "
                    "SELECT u.id, r.id FROM users u, roles r"
                )
            )
        db.session.remove()
        db.engine.dispose()
    (settings.data_dir / MARKER).write_text("initialized\n")


def test_a_first_release_installation_upgrades_in_place(cli, settings, app_for):
    _first_release_installation(settings, app_for)

    result = cli("upgrade")
    assert result.exit_code == 0, result.output
    assert f"Schema: 0001 -> {schema.head_revision()}." in result.output
    # Its keyring is new and random: no key file is made for it.
    assert not (settings.secrets_dir / CREDENTIALS_KEY).exists()
    assert cli("check").exit_code == 0

    app = app_for(settings)
    with app.app_context():
        admin = db.session.scalar(select(User).where(User.email == ADMIN_EMAIL))
        assert admin is not None and admin.team_id is None and not admin.mfa_enabled
        slugs = set(db.session.scalars(select(Role.name)))
        assert {"administrator", "sales_rep", "sales_manager", "auditor"} <= slugs
    client = app.test_client()
    assert sign_in(client, ADMIN_EMAIL, ADMIN_PASSWORD).status_code == 302
    # The old administrator role kept its "*" and gained the default rules on objects.
    assert client.get("/admin/users").status_code == 200
    with app.app_context():
        from bastion import authz

        admin = db.session.scalar(select(User).where(User.email == ADMIN_EMAIL))
        assert authz.object_decision(admin, "contacts", "delete").allowed


def _pre_keyring_installation(cli, settings, app_for, legacy_key: bytes | None) -> str:
    """An installation from before the keyring: MFA secrets under credentials.key (or
    that file lost), no encryption_keys rows. Returns the stored MFA ciphertext."""
    assert run_init(cli).exit_code == 0
    app = app_for(settings)
    with app.app_context():
        db.session.execute(text("DELETE FROM encryption_keys"))
        admin = db.session.scalar(select(User).where(User.email == ADMIN_EMAIL))
        key_dir = settings.data_dir / "old-key"
        key_dir.mkdir()
        (key_dir / CREDENTIALS_KEY).write_text((legacy_key or bytes(32)).hex())
        cipher = CredentialCipher(key_dir)
        sealed = cipher.encrypt("JBSWY3DPEHPK3PXP", context=f"users.mfa_secret:{admin.id}")
        db.session.execute(
            text("UPDATE users SET mfa_secret = :s WHERE id = :i"), {"s": sealed, "i": admin.id}
        )
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    if legacy_key is not None:
        path = settings.secrets_dir / CREDENTIALS_KEY
        path.write_text(legacy_key.hex() + "\n")
        path.chmod(0o600)
    return sealed


def test_upgrade_refuses_to_replace_a_lost_key_that_secrets_depend_on(cli, settings, app_for):
    _pre_keyring_installation(cli, settings, app_for, legacy_key=None)

    result = cli("upgrade")
    assert result.exit_code == 1
    assert "restore it from a backup" in result.output
    assert not (settings.secrets_dir / CREDENTIALS_KEY).exists()
    app = app_for(settings)
    with app.app_context():
        assert db.session.scalar(text("SELECT COUNT(*) FROM encryption_keys")) == 0


def test_upgrade_wraps_the_credentials_key_as_version_1_and_removes_the_file(
    cli, settings, app_for
):
    legacy = bytes(range(32))
    sealed = _pre_keyring_installation(cli, settings, app_for, legacy_key=legacy)

    result = cli("upgrade")
    assert result.exit_code == 0, result.output
    assert "as data key version 1 and removed the file" in result.output
    assert not (settings.secrets_dir / CREDENTIALS_KEY).exists()
    checked = cli("check")
    assert checked.exit_code == 0, checked.output
    app = app_for(settings)
    with app.app_context():
        from bastion.keys.cipher import EnvelopeCipher
        from bastion.keys.keyring import DATA, keyring

        assert keyring().key(DATA, 1) == legacy
        admin_id = db.session.scalar(select(User.id).where(User.email == ADMIN_EMAIL))
        plain = EnvelopeCipher().decrypt(sealed, context=f"users.mfa_secret:{admin_id}")
        assert plain == "JBSWY3DPEHPK3PXP"
    # A second upgrade has nothing left to wrap, and does not ask for the file.
    again = cli("upgrade")
    assert again.exit_code == 0, again.output
    assert "removed the file" not in again.output
