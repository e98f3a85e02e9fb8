"""`bastion check` treats bastion.toml like a secret: it may hold the database password."""

from tests.core.conftest import run_init


def test_check_reports_a_config_file_others_can_read(cli, data_dir):
    assert run_init(cli).exit_code == 0
    config = data_dir / "bastion.toml"
    config.write_text('log_level = "INFO"\n')
    config.chmod(0o600)
    assert cli("check").exit_code == 0
    config.chmod(0o644)
    result = cli("check")
    assert result.exit_code == 1
    assert f"problem: {config} can be read by other users; run `chmod 600 {config}`." in (
        result.output
    )
