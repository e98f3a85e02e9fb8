"""`bastion check` reports a missing secret and misspelled settings, and still checks the rest."""

from tests.core.conftest import UNREACHABLE_DATABASE, run_init


def test_a_missing_session_key_is_one_clear_problem_and_the_database_is_still_checked(
    cli, data_dir
):
    assert run_init(cli).exit_code == 0
    key = data_dir / "secrets" / "session.key"
    key.unlink()
    result = cli("check")
    assert result.exit_code == 1
    assert f"problem: The secret file {key} is missing" in result.output
    assert "ok: database reachable" in result.output
    assert "Traceback" not in result.output


def test_a_misspelled_setting_is_pointed_out(cli, data_dir, bastion_env):
    assert run_init(cli).exit_code == 0
    result = cli("check", env={"BASTION_DATABSE_URL": UNREACHABLE_DATABASE})
    assert result.exit_code == 0  # the installation itself is fine
    assert (
        "warning: BASTION_DATABSE_URL is not a Bastion setting; check its spelling."
        in result.output
    )
