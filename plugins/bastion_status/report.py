"""Gathers the status report from the core's public facade."""

from __future__ import annotations

import os
import platform
import shutil
import time
from dataclasses import asdict, dataclass
from typing import Any

from bastion.api import core_version, current_settings, database_health, installed_plugins

# Set by the startup hook in each server process.
_process_started: float | None = None


def mark_process_start() -> None:
    global _process_started
    if _process_started is None:
        _process_started = time.time()


@dataclass(frozen=True)
class StatusReport:
    version: str
    python: str
    pid: int
    uptime_seconds: int | None
    database_backend: str
    database_reachable: bool
    database_latency_ms: float | None
    schema_current: bool | None
    disk_free_bytes: int | None
    disk_total_bytes: int | None
    plugins_installed: int
    plugins_enabled: int
    plugins_broken: int
    plugin_errors: int

    @property
    def healthy(self) -> bool:
        return (
            self.database_reachable
            and bool(self.schema_current)
            and self.plugins_broken == 0
            and not self.disk_low
        )

    @property
    def disk_low(self) -> bool:
        if not self.disk_free_bytes or not self.disk_total_bytes:
            return False
        return self.disk_free_bytes / self.disk_total_bytes < 0.05

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "healthy": self.healthy, "disk_low": self.disk_low}


def build_report() -> StatusReport:
    settings = current_settings()
    db = database_health()
    plugins = installed_plugins()
    try:
        usage = shutil.disk_usage(settings.data_dir)
        free, total = usage.free, usage.total
    except OSError:
        free = total = None
    return StatusReport(
        version=core_version,
        python=platform.python_version(),
        pid=os.getpid(),
        uptime_seconds=int(time.time() - _process_started) if _process_started else None,
        database_backend=db.backend,
        database_reachable=db.reachable,
        database_latency_ms=db.latency_ms,
        schema_current=db.schema_current,
        disk_free_bytes=free,
        disk_total_bytes=total,
        plugins_installed=len(plugins),
        plugins_enabled=sum(p.enabled for p in plugins),
        plugins_broken=sum(p.error is not None for p in plugins),
        plugin_errors=sum(p.recent_failures for p in plugins),
    )
