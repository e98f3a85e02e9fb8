"""The `bastion` command: init, serve, check, upgrade, plugins, and plugins' own commands."""

from __future__ import annotations

import copy
import os
import secrets
import sys
from functools import update_wrapper
from typing import Any

import click
from flask import Flask
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from bastion import __version__
from bastion.config import CONFIG_FILE_NAME, ConfigError, Settings, load_settings


class Context:
    """Settings and a lazily built application, shared by the subcommands."""

    def __init__(self, data_dir: str | None) -> None:
        self.data_dir = data_dir
        self._settings: Settings | None = None
        self._app: Flask | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings(self.data_dir)
            except ConfigError as exc:
                raise click.ClickException(str(exc)) from None
        return self._settings

    def app(self, secret_key: str | None = None) -> Flask:
        if self._app is None:
            from bastion.app import create_app

            self._app = create_app(self.settings, secret_key=secret_key)
        return self._app


def with_app(func: Any) -> Any:
    """Run a command inside the application context of an initialized data directory."""

    @click.pass_obj
    def wrapper(ctx: Context, *args: Any, **kwargs: Any) -> Any:
        from bastion.provision import is_initialized

        if not is_initialized(ctx.settings.data_dir):
            raise click.ClickException(
                f"{ctx.settings.data_dir} is not initialized; run `bastion init` first."
            )
        from bastion.keyfiles import SecretFileError

        try:
            app = ctx.app()
            with app.app_context():
                return func(app, *args, **kwargs)
        except SecretFileError as exc:  # a missing or damaged key file: say which
            raise click.ClickException(str(exc)) from None

    return update_wrapper(wrapper, func)


class BastionGroup(click.Group):
    """Adds the subcommands that enabled plugins register."""

    def _plugin_commands(self, ctx: click.Context) -> dict[str, click.Command]:
        cached = ctx.meta.get("bastion.plugin_commands")
        if cached is not None:
            return cached
        commands: dict[str, click.Command] = {}
        obj = ctx.find_object(Context) or Context(ctx.params.get("data_dir"))
        try:
            from bastion.provision import is_initialized

            if is_initialized(obj.settings.data_dir):
                app = obj.app()
                from bastion.runtime import platform

                with app.app_context():
                    plat = platform(app)
                    taken = set(super().list_commands(ctx))
                    for owner, command in plat.hook_items("register_commands", click.Command):
                        if not command.name:
                            message = "It returned a click command without a name."
                        elif command.name in taken:
                            message = f"Its command {command.name!r} clashes with another one."
                        else:
                            taken.add(command.name)
                            commands[command.name] = _in_app_context(command, app)
                            continue
                        plat.registry.record_failure(owner, "register_commands", message)
        except (click.ClickException, SystemExit):
            pass  # set-up problems are reported by the command the user asked for
        ctx.meta["bastion.plugin_commands"] = commands
        return commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._plugin_commands(ctx)))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return super().get_command(ctx, name) or self._plugin_commands(ctx).get(name)


def _in_app_context(command: click.Command, app: Flask) -> click.Command:
    """A copy of a plugin's command that runs, subcommands included, in ``app``'s context.

    The plugin's own command object is left untouched: wrapping it in place would stack
    one wrapper per invocation in a long-lived process, and the innermost (the first
    application ever built) would win.
    """
    wrapped = copy.copy(command)

    def invoke(ctx: click.Context) -> Any:
        with app.app_context():
            return command.invoke(ctx)

    wrapped.invoke = invoke  # type: ignore[method-assign]
    return wrapped


@click.group(cls=BastionGroup)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Data directory (default: $BASTION_DATA_DIR or ./bastion-data).",
)
@click.version_option(__version__, prog_name="bastion")
@click.pass_context
def main(ctx: click.Context, data_dir: str | None) -> None:
    """Bastion, the self-hosted CRM."""
    ctx.obj = Context(data_dir)


@main.command()
@click.option(
    "--data-dir",
    "init_data_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Data directory to create (overrides the global option).",
)
@click.option(
    "--admin-email",
    default=None,
    help="Email of the first administrator (asked for on a terminal when left out).",
)
@click.option(
    "--admin-password-file",
    default=None,
    type=click.File("r"),
    help="File holding the administrator's password ('-' for standard input); "
    "asked for on a terminal when left out.",
)
@click.option("--demo", is_flag=True, help="Also load the demo organization.")
@click.option("--force", is_flag=True, help="Wipe and initialize an initialized directory.")
@click.pass_obj
def init(
    ctx: Context,
    init_data_dir: str | None,
    admin_email: str | None,
    admin_password_file: Any,
    demo: bool,
    force: bool,
) -> None:
    """Create the data directory, schema, secrets and first administrator."""
    from bastion.data.definitions import DefinitionError
    from bastion.identity import IdentityError, normalize_email
    from bastion.passwords import PasswordPolicyError, Passwords
    from bastion.provision import ProvisionError, initialize, prepare_data_dir, reset_database

    if init_data_dir:
        ctx.data_dir, ctx._settings = init_data_dir, None
    settings = ctx.settings
    interactive = sys.stdin.isatty()
    if admin_email is None:
        if not interactive:
            raise click.UsageError("Give --admin-email (there is no terminal to ask on).")
        admin_email = click.prompt("Administrator email")
    if admin_password_file is not None:
        password = admin_password_file.read().rstrip("\r\n")
    elif interactive:
        password = click.prompt("Administrator password", hide_input=True, confirmation_prompt=True)
    else:
        raise click.UsageError("Give --admin-password-file (there is no terminal to ask on).")
    try:
        normalize_email(admin_email)
        Passwords(settings).check_policy(password)
        prepare_data_dir(settings.data_dir, force=force)
    except (ProvisionError, IdentityError, PasswordPolicyError) as exc:
        raise click.ClickException(str(exc)) from None
    app = ctx.app()
    if force and not settings.is_sqlite:
        with app.app_context():
            reset_database()
    try:
        enabled = initialize(
            app, admin_email=admin_email, admin_password=password, demo=demo, sample_records=demo
        )
    except (IdentityError, PasswordPolicyError, SQLAlchemyError, DefinitionError) as exc:
        if settings.is_sqlite:
            # The directory was never initialized: leave no half-made database behind.
            with app.app_context():
                from bastion.db import db

                db.session.remove()
                db.engine.dispose()
            for suffix in ("", "-wal", "-shm"):
                settings.sqlite_path.with_name(settings.sqlite_path.name + suffix).unlink(
                    missing_ok=True
                )
        if isinstance(exc, SQLAlchemyError):
            raise click.ClickException(
                f"The database refused the set-up ({type(exc).__name__}). If it already "
                "holds a Bastion schema, use --force to replace it."
            ) from None
        raise click.ClickException(str(exc)) from None
    click.echo(f"Initialized {settings.data_dir}.")
    click.echo(f"Enabled plugins: {', '.join(enabled) or 'none'}.")
    if demo:
        click.echo("Loaded the demo organization.")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256))
@click.option(
    "--processes",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker processes sharing the port; one uses at most one CPU core.",
)
@with_app
def serve(app: Flask, host: str, port: int, threads: int, processes: int) -> None:
    """Serve Bastion with waitress."""
    from bastion import schema, server

    if not schema.is_current():
        raise click.ClickException(
            "The database schema is older than this version of Bastion; "
            "run `bastion upgrade` first."
        )
    _check_master_key_or_refuse()
    plat = app.extensions["bastion"]
    settings = plat.settings
    # Start-ups run before the first request is accepted, not inside someone's request.
    plat.run_pending_startups(app)
    workers = f", {processes} processes" if processes > 1 else ""
    click.echo(
        f"Bastion {__version__} serving on http://{host}:{port}{workers} "
        f"(data: {settings.data_dir})"
    )
    # Forwarded headers are judged by the application (bastion.web.proxies), which must
    # see them; without trusted proxies waitress drops them all.
    options: dict[str, Any] = {
        "clear_untrusted_proxy_headers": not settings.trusted_proxy_count,
        "ident": "Bastion",
    }
    server.serve(
        app,
        host=host,
        port=port,
        threads=threads,
        processes=processes,
        # Each serving process keeps the search index in step; replays what a crash left.
        on_start=_start_background_work,
        options=options,
    )


def _check_master_key_or_refuse() -> None:
    """A missing or wrong master key stops `serve` now, not as errors on every request."""
    from bastion.keys.keyring import KeyringError, check_master_key
    from bastion.keys.master import MasterKeyError

    try:
        check_master_key()
    except (MasterKeyError, KeyringError) as exc:
        raise click.ClickException(f"Not serving: {exc}") from None


def _start_background_work(app: Flask) -> None:
    """What each serving process runs beside requests: the search indexer (which replays
    what a crash left in the outbox), the audit trail's periodic checkpoints, and field
    encryption migrations an earlier process left unfinished."""
    from bastion.audit.anchors import start_checkpointer
    from bastion.keys.fields import resume_at_start
    from bastion.search import start_indexer

    start_indexer(app)
    start_checkpointer(app)
    resume_at_start(app)


@main.command()
@with_app
def upgrade(app: Flask) -> None:
    """Migrate the database and register newly installed plugins."""
    from bastion import schema
    from bastion.plugins import state
    from bastion.runtime import platform

    before = schema.current_revision()
    schema.upgrade()
    from bastion.db import db
    from bastion.default_roles import ensure_default_roles

    _ensure_credentials_key(platform(app).settings)
    from bastion.audit.anchors import ensure_audit_keys

    ensure_audit_keys(platform(app).settings.secrets_dir)
    _ensure_keyring(app)
    ensure_default_roles()  # adds missing default roles; never overwrites edited ones
    db.session.commit()
    from bastion.data.setup import DeclarationsHeld, sync_definitions

    try:
        changed = sync_definitions(app)
    except DeclarationsHeld as exc:
        if exc.changes:
            click.echo(f"Data model: {len(exc.changes)} definition changes applied.")
        raise click.ClickException(
            f"The database schema is upgraded, but some plugins' definitions were held "
            f"back: {exc} Then run `bastion upgrade` again."
        ) from None
    enabled = state.sync_new_plugins(platform(app).registry)
    click.echo(f"Schema: {before or 'empty'} -> {schema.current_revision()}.")
    if changed:
        click.echo(f"Data model: {len(changed)} definition changes applied.")
    if enabled:
        click.echo(f"Enabled new plugins: {', '.join(enabled)}.")


def _ensure_credentials_key(settings: Settings) -> None:
    """Refuse to build a keyring when the pre-keyring credentials key was lost.

    Installations from before the keyring kept MFA secrets under
    ``secrets/credentials.key``, which `bastion upgrade` wraps as data key version 1. If
    there is no keyring yet, no such file, and MFA secrets in the database, the key was
    lost: a random version 1 would not decrypt them. Once a keyring exists the file is
    no longer needed (nor created).
    """
    from sqlalchemy import func, select

    from bastion.db import db
    from bastion.keyfiles import CREDENTIALS_KEY
    from bastion.keys.models import EncryptionKey
    from bastion.models import User

    if (settings.secrets_dir / CREDENTIALS_KEY).exists():
        return
    if db.session.scalar(select(EncryptionKey.id).limit(1)) is not None:
        return
    enrolled = db.session.scalar(select(func.count()).where(User.mfa_secret.is_not(None)))
    if enrolled:
        raise click.ClickException(
            f"The key file {settings.secrets_dir / CREDENTIALS_KEY} is missing but "
            f"{enrolled} users have MFA secrets encrypted with it; restore it from a backup."
        )


def _ensure_keyring(app: Flask) -> None:
    """The master key file and the keyring; the credentials key becomes data key 1."""
    from bastion.keys.keyring import KeyringError, ensure_keys, retire_legacy_key_file
    from bastion.keys.master import MasterKeyError, ensure_key_file
    from bastion.runtime import platform

    plat = platform(app)
    try:
        created = ensure_key_file(plat.settings, registry=plat.registry)
        if created:
            click.echo(f"Created {created}; back it up apart from the database.")
        ensure_keys()
        legacy = retire_legacy_key_file()
    except (MasterKeyError, KeyringError) as exc:
        raise click.ClickException(str(exc)) from None
    if legacy is not None:
        path, removed = legacy
        if removed:
            click.echo(f"Wrapped {path} as data key version 1 and removed the file.")
        else:
            click.echo(
                f"warning: {path} does not match data key version 1 and was kept; "
                "move it somewhere safe if it is the only copy of a key, then delete it."
            )


@main.command()
@click.pass_obj
def check(ctx: Context) -> None:
    """Check configuration, database, schema and secrets; exit non-zero on any problem."""
    try:
        settings = ctx.settings
    except click.ClickException as exc:
        click.echo(f"problem: {exc.message}")
        sys.exit(1)
    from bastion.config import unknown_variables
    from bastion.provision import is_initialized

    click.echo(f"ok: configuration loaded (data directory {settings.data_dir})")
    for name in unknown_variables(os.environ):
        click.echo(f"warning: {name} is not a Bastion setting; check its spelling.")
    problems: list[str] = []
    if not is_initialized(settings.data_dir):
        problems.append(f"{settings.data_dir} is not initialized; run `bastion init`.")
    else:
        if not os.access(settings.data_dir, os.W_OK):
            problems.append(f"{settings.data_dir} is not writable by this user.")
        problems += _secret_problems(settings)
        problems += _database_problems(ctx)
    for problem in problems:
        click.echo(f"problem: {problem}")
    if problems:
        sys.exit(1)


SECRET_PURPOSES = {
    "session.key": "existing sessions and signed links",
}


def _secret_problems(settings: Settings) -> list[str]:
    from bastion.keyfiles import REQUIRED_SECRETS, permission_problems

    problems = permission_problems(settings.secrets_dir)
    for name in REQUIRED_SECRETS:
        if settings.secrets_dir.is_dir() and not (settings.secrets_dir / name).is_file():
            problems.append(
                f"The secret file {settings.secrets_dir / name} is missing; restore it from "
                f"a backup (without it, {SECRET_PURPOSES.get(name, 'data it protects')} "
                "cannot be read), or run `bastion upgrade` if this installation predates it."
            )
    problems += _master_key_problems(settings)
    config_file = settings.data_dir / CONFIG_FILE_NAME
    if config_file.exists() and config_file.stat().st_mode & 0o077:
        # It may hold the database password.
        problems.append(f"{config_file} can be read by other users; run `chmod 600 {config_file}`.")
    if not problems:
        click.echo("ok: secret files are readable only by their owner")
    return problems


def _master_key_problems(settings: Settings) -> list[str]:
    """A key file outside the secrets folder (that folder is checked as a whole above)."""
    from bastion.keys.master import file_problems, key_file_path

    path = key_file_path(settings)
    if path.parent == settings.secrets_dir or not path.exists():
        return []  # a missing file is reported with the keyring check, once plugins are known
    return file_problems(path)


def _keyring_problems() -> list[str]:
    """Whether the master key is there and unwraps every stored data key."""
    from bastion.keys.keyring import KeyringError, check_master_key
    from bastion.keys.master import MasterKeyError

    try:
        check_master_key()
    except (MasterKeyError, KeyringError) as exc:
        return [str(exc)]
    except SQLAlchemyError:
        return []  # an old schema: reported as such
    click.echo("ok: the master key unwraps the data keys")
    return []


def _database_problems(ctx: Context) -> list[str]:
    from bastion import schema
    from bastion.db import db
    from bastion.runtime import platform

    # A missing session key is reported above; the database can be checked without it.
    app = ctx.app(secret_key=secrets.token_hex(32))
    problems = []
    with app.app_context():
        try:
            db.session.execute(text("SELECT 1"))
            click.echo(f"ok: database reachable ({db.engine.dialect.name})")
            if schema.is_current():
                click.echo(f"ok: schema at revision {schema.head_revision()}")
                problems += _keyring_problems()
            else:
                problems.append(
                    "The database schema is not at this version's revision; run `bastion upgrade`."
                )
        except SQLAlchemyError as exc:
            problems.append(
                f"The database is not reachable ({type(exc).__name__}); check "
                "BASTION_DATABASE_URL and that the server is running."
            )
        for name, plugin in sorted(platform(app).registry.plugins.items()):
            if plugin.error:
                click.echo(f"warning: plugin {name} cannot run: {plugin.error}")
    return problems


@main.group()
def plugins() -> None:
    """List, enable and disable plugins."""


@plugins.command("list")
@with_app
def plugins_list(app: Flask) -> None:
    """Show installed plugins and whether each is enabled."""
    from bastion.plugins import state
    from bastion.runtime import platform

    plat = platform(app)
    stored = state.stored_enabled()
    running = plat.enabled_plugins()
    for name, plugin in sorted(plat.registry.plugins.items()):
        if plugin.error:
            status = "broken"
        elif name in running:
            status = "enabled"
        elif name in stored:
            status = "enabled, waiting for a dependency"
        else:
            status = "disabled"
        version = plugin.version or "?"
        line = f"{name:<20} {status:<10} {version:<10} {plugin.label}"
        if plugin.requires:
            line += f"  (needs {', '.join(plugin.requires)})"
        if plugin.error:
            line += f"  -- {plugin.error}"
        click.echo(line.rstrip())


def _change(app: Flask, names: tuple[str, ...], action: str) -> None:
    from bastion.plugins import state
    from bastion.runtime import platform

    change = state.enable if action == "enable" else state.disable
    try:
        changed = change(platform(app).registry, names, actor=f"cli:{_os_user()}")
    except state.PluginStateError as exc:
        raise click.ClickException(str(exc)) from None
    verb = "Enabled" if action == "enable" else "Disabled"
    unchanged = [n for n in names if n not in changed]
    if changed:
        click.echo(f"{verb}: {', '.join(changed)}.")
    if unchanged:
        click.echo(f"Already {verb.lower()}: {', '.join(unchanged)}.")


@plugins.command("enable")
@click.argument("names", nargs=-1, required=True)
@with_app
def plugins_enable(app: Flask, names: tuple[str, ...]) -> None:
    """Enable plugins (name several to enable them together)."""
    _change(app, names, "enable")


@plugins.command("disable")
@click.argument("names", nargs=-1, required=True)
@with_app
def plugins_disable(app: Flask, names: tuple[str, ...]) -> None:
    """Disable plugins (name several to disable them together)."""
    _change(app, names, "disable")


def _os_user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return os.environ.get("USER", "unknown")


from bastion.cli_identity import register as _register_identity  # noqa: E402

_register_identity(main)

from bastion.cli_data import register as _register_data  # noqa: E402

_register_data(main)

from bastion.cli_backup import register as _register_backup  # noqa: E402

_register_backup(main)

from bastion.cli_keys import register as _register_keys  # noqa: E402

_register_keys(main)

from bastion.cli_audit import register as _register_audit  # noqa: E402

_register_audit(main)

from bastion.search.cli import search as _search_commands  # noqa: E402

main.add_command(_search_commands)

if __name__ == "__main__":  # pragma: no cover
    main()
