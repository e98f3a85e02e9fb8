"""Hook implementations of the status plugin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from bastion.api import (
    Blueprint,
    DashboardWidget,
    DemoContext,
    NavItem,
    Permission,
    PluginAssets,
    PluginManifest,
    has_permission,
    hookimpl,
    render_template,
    requires,
)
from bastion_status.report import build_report, mark_process_start

manifest = PluginManifest(
    label="System status",
    description="Version, database, disk and plugin health, for operators and auditors.",
    core_version=">=0.1,<1",
    enabled_by_default=True,
)

VIEW = "status.view"
HERE = Path(__file__).parent
bp = Blueprint("status", __name__, url_prefix="/status")


@bp.get("/")
@requires(VIEW)
def page():
    return render_template("status/page.html", report=build_report())


@bp.get("/report")
@requires(VIEW)
def report_fragment():
    """Refreshed by htmx every 30 seconds while the page is open."""
    return render_template("status/_report.html", report=build_report())


@bp.get("/report.json")
@requires(VIEW)
def report_json():
    return build_report().as_dict()


@hookimpl
def register_blueprints() -> list[Blueprint]:
    return [bp]


@hookimpl
def register_assets() -> PluginAssets:
    return PluginAssets(templates=HERE / "templates")


@hookimpl
def register_permissions() -> list[Permission]:
    return [Permission(VIEW, "See system status", "Version, database, disk and plugin health.")]


@hookimpl
def navigation_items(user: Any) -> list[NavItem]:
    return [NavItem("System status", "status.page", icon="activity", permission=VIEW, order=900)]


@hookimpl
def dashboard_widgets(user: Any) -> list[DashboardWidget]:
    if not has_permission(user, VIEW):
        return []  # the report costs a query and a disk check: build it only for viewers
    return [
        DashboardWidget(
            title="System health",
            template="status/_widget.html",
            context={"report": build_report()},
            permission=VIEW,
            order=900,
        )
    ]


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def status_command(as_json: bool) -> None:
    """Show version, database, disk and plugin health; exit 1 when unhealthy."""
    report = build_report()
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        for key, value in report.as_dict().items():
            click.echo(f"{key}: {value}")
    if not report.healthy:
        raise SystemExit(1)


@hookimpl
def register_commands() -> list[click.Command]:
    return [status_command]


@hookimpl
def load_demo_data(app: Any, demo: DemoContext) -> None:
    # Auditors and sales managers watch the installation's health in the demo.
    demo.grant("auditor", VIEW)
    demo.grant("sales_manager", VIEW)


@hookimpl
def startup(app: Any) -> None:
    mark_process_start()
