"""Discovery of installed plugins and isolated, enabled-only hook calls."""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from bastion.plugins import hookspecs
from bastion.plugins.contributions import PluginManifest

ENTRY_POINT_GROUP = "bastion.plugins"
CORE = "core"
# Plugin names become permission prefixes, blueprint names and URL prefixes, so the
# core's own may not be taken.
RESERVED_NAMES = frozenset(
    {
        CORE,
        "account",
        "admin",
        "admin_access",
        "admin_users",
        "api",
        "assets",
        "audit",
        "auth",
        "health",
        "home",
        "login",
        "mfa",
        "password",
        "reauth",
        "static",
        "tokens",
    }
)
PLUGIN_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}\Z")
log = logging.getLogger("bastion.plugins")


@dataclass
class InstalledPlugin:
    """A plugin found through its entry point, whether or not it could be loaded."""

    name: str
    entry_point: str
    distribution: str | None = None
    version: str | None = None
    manifest: PluginManifest | None = None
    module: ModuleType | None = None
    #: Why the plugin cannot run (import error, incompatible core, broken registration).
    error: str | None = None

    @property
    def usable(self) -> bool:
        return self.module is not None and self.error is None

    @property
    def label(self) -> str:
        return self.manifest.label if self.manifest else self.name

    @property
    def requires(self) -> tuple[str, ...]:
        return self.manifest.requires if self.manifest else ()


@dataclass(frozen=True)
class PluginFailure:
    plugin: str
    stage: str
    message: str
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


class _Refused(Exception):
    """A plugin cannot be loaded; the message is the reason shown to administrators."""


class PluginRegistry:
    """Holds the installed plugins of one process and calls their hooks safely.

    Callers pass the set of enabled plugins (narrowed by :meth:`effective_enabled` from
    the database rows); the registry never reads the database itself.
    """

    def __init__(self, core_version: str) -> None:
        self.core_version = Version(core_version)
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, InstalledPlugin] = {}
        # Recent failures of this process (the log has them all), newest last.
        self._failures: deque[PluginFailure] = deque(maxlen=200)
        self._started: set[str] = set()
        self._lock = threading.Lock()
        self._startup_lock = threading.Lock()

    # -- discovery -------------------------------------------------------------

    def register_core(self, module: ModuleType) -> None:
        """The core's own hook implementations, always enabled."""
        self.pm.register(module, name=CORE)

    def discover(self, entry_points: Iterable[metadata.EntryPoint] | None = None) -> None:
        if entry_points is None:
            entry_points = metadata.entry_points(group=ENTRY_POINT_GROUP)
        for ep in sorted(entry_points, key=lambda e: e.name):
            self._load(ep)

    def _load(self, ep: metadata.EntryPoint) -> None:
        dist = getattr(ep, "dist", None)
        plugin = InstalledPlugin(
            name=ep.name,
            entry_point=ep.value,
            distribution=dist.name if dist else None,
            version=dist.version if dist else None,
        )
        if ep.name in self.plugins:
            # Keep the first one; list the second under its own key so it shows up.
            self.plugins.setdefault(f"{ep.name} ({ep.value})", plugin)
            refusal = _Refused(f"Another plugin is already installed under the name {ep.name!r}.")
        else:
            self.plugins[ep.name] = plugin
            try:
                plugin.module = self._load_module(ep, plugin)
                return
            except _Refused as exc:
                refusal = exc
        plugin.error = str(refusal)
        self.record_failure(ep.name, "import", plugin.error, refusal.__cause__)

    def _load_module(self, ep: metadata.EntryPoint, plugin: InstalledPlugin) -> ModuleType:
        """Import and register the plugin's module, or raise _Refused saying why not."""
        if ep.name in RESERVED_NAMES:
            raise _Refused(f"The name {ep.name!r} is reserved for Bastion's core.")
        if not PLUGIN_NAME.match(ep.name):
            raise _Refused(
                f"The name {ep.name!r} is not lower-case letters, digits and underscores."
            )
        try:
            module = ep.load()
        except Exception as exc:
            raise _Refused(f"It failed to import: {type(exc).__name__}: {exc}") from exc
        manifest = getattr(module, "manifest", None)
        if not isinstance(manifest, PluginManifest):
            raise _Refused("Its module has no `manifest = PluginManifest(...)`.")
        plugin.manifest = manifest
        problem = self._compatibility_problem(manifest)
        if problem:
            raise _Refused(problem)
        try:
            self.pm.register(module, name=ep.name)
        except Exception as exc:  # pluggy rejects hooks whose arguments match no specification
            raise _Refused(f"Its hooks are invalid: {exc}") from exc
        callers = self.pm.get_hookcallers(module) or []
        # A misspelled hook would otherwise be accepted and silently never called.
        unknown = sorted(c.name for c in callers if c.spec is None)
        # Bastion calls each implementation on its own, so wrappers cannot work.
        wrappers = sorted(
            c.name
            for c in callers
            for impl in c.get_hookimpls()
            if impl.plugin is module and (impl.hookwrapper or impl.wrapper)
        )
        if unknown or wrappers:
            self.pm.unregister(module)
            if unknown:
                raise _Refused(
                    f"It implements {', '.join(unknown)}, which Bastion does not define."
                )
            raise _Refused(
                f"It implements {', '.join(wrappers)} as a wrapper; Bastion hooks take none."
            )
        return module

    def _compatibility_problem(self, manifest: PluginManifest) -> str | None:
        if not manifest.core_version:
            return None
        try:
            spec = SpecifierSet(manifest.core_version)
        except InvalidSpecifier:
            return f"Its core version range {manifest.core_version!r} is not a valid specifier."
        if self.core_version not in spec:
            return (
                f"It needs Bastion {manifest.core_version}, and this is Bastion "
                f"{self.core_version}."
            )
        return None

    # -- state -----------------------------------------------------------------

    def effective_enabled(self, wanted: Iterable[str]) -> frozenset[str]:
        """Narrow the names enabled in the database to plugins that can actually run."""
        enabled = {n for n in wanted if n in self.plugins and self.plugins[n].usable}
        changed = True
        while changed:  # a plugin whose dependency is off is off too
            changed = False
            for name in list(enabled):
                if any(dep not in enabled for dep in self.plugins[name].requires):
                    enabled.discard(name)
                    changed = True
        return frozenset(enabled)

    def run_startups(self, enabled: frozenset[str], app: Any) -> list[str]:
        """Call ``startup`` once per process for each enabled plugin not started yet.

        Other threads wait until it has finished, so no request reaches a half-started
        plugin; a plugin whose start-up fails is broken in this process. Returns the
        plugins whose start-up ran in this call.
        """
        if not enabled - self._started:
            return []
        ran = []
        with self._startup_lock:
            for name in sorted(enabled - self._started):
                self.call("startup", frozenset({name}), strict=True, app=app)
                self._started.add(name)
                ran.append(name)
        return ran

    # -- calling hooks ---------------------------------------------------------

    def call(
        self,
        hook_name: str,
        enabled: frozenset[str] | None,
        *,
        strict: bool = False,
        raise_from: str | None = None,
        **kwargs: Any,
    ) -> list[tuple[str, Any]]:
        """Call a hook on the core and the given plugins (None: every usable plugin).

        Each implementation is called on its own so that one plugin's exception is
        caught, logged with its name and recorded, and the others still answer. When
        ``strict`` (registration, start-up), a failure marks the plugin broken: half set
        up, it must not run. The exception of plugin ``raise_from`` is recorded and then
        raised again: a record hook of the object's own plugin keeps the object's
        computed values consistent, so its failure must stop the write. Returns (plugin
        name, result) pairs in pluggy's call order, None results left out.
        """
        caller = getattr(self.pm.hook, hook_name)
        expected = set(caller.spec.argnames) if caller.spec else set()
        if set(kwargs) != expected:
            raise TypeError(f"Hook {hook_name} takes {sorted(expected)}, got {sorted(kwargs)}.")
        results: list[tuple[str, Any]] = []
        for impl in reversed(caller.get_hookimpls()):
            name = impl.plugin_name
            if name != CORE:
                if enabled is not None and name not in enabled:
                    continue
                plugin = self.plugins.get(name)
                if plugin is None or not plugin.usable:
                    continue
            try:
                result = impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
            except Exception as exc:
                self.record_failure(
                    name, hook_name, f"{type(exc).__name__}: {exc}", exc, broken=strict
                )
                if raise_from is not None and name == raise_from:
                    raise
                continue
            if result is not None:
                results.append((name, result))
        return results

    def checked(
        self, pairs: list[tuple[str, Any]], kind: type, hook_name: str, strict: bool
    ) -> list[tuple[str, Any]]:
        """Keep the pairs whose value is a ``kind``; record the others as failures."""
        kept = []
        for name, value in pairs:
            if isinstance(value, kind):
                kept.append((name, value))
            else:
                message = f"It returned a {type(value).__name__} where a {kind.__name__} belongs."
                self.record_failure(name, hook_name, message, broken=strict)
        return kept

    def call_list(
        self,
        hook_name: str,
        enabled: frozenset[str] | None,
        *,
        strict: bool = False,
        kind: type | None = None,
        **kwargs: Any,
    ) -> list[tuple[str, Any]]:
        """Like :meth:`call` for hooks returning lists: flattened (plugin, item) pairs.

        With ``kind``, items of any other type are dropped and recorded as failures, so
        one plugin's malformed item cannot break the page that shows everyone's.
        """
        items: list[tuple[str, Any]] = []
        for name, result in self.call(hook_name, enabled, strict=strict, **kwargs):
            if not isinstance(result, list | tuple):
                message = f"It returned {type(result).__name__}, not a list."
                self.record_failure(name, hook_name, message, broken=strict)
                continue
            items.extend((name, item) for item in result)
        return items if kind is None else self.checked(items, kind, hook_name, strict)

    # -- failures --------------------------------------------------------------

    def recent_failures(self) -> list[PluginFailure]:
        with self._lock:
            return list(self._failures)

    def failures_by_plugin(self) -> dict[str, list[PluginFailure]]:
        grouped: dict[str, list[PluginFailure]] = {}
        for failure in self.recent_failures():
            grouped.setdefault(failure.plugin, []).append(failure)
        return grouped

    def record_failure(
        self,
        plugin: str,
        stage: str,
        message: str,
        exc: BaseException | None = None,
        *,
        broken: bool = False,
    ) -> None:
        """Log a plugin's failure with its name and keep it for the admin page.

        ``broken``: the plugin failed while being set up (registration, start-up); it
        stays installed, with this message as the reason, but cannot run.
        """
        installed = self.plugins.get(plugin)
        if broken and installed is not None and installed.error is None:
            installed.error = message
        with self._lock:
            self._failures.append(PluginFailure(plugin=plugin, stage=stage, message=message))
        log.error(
            "Plugin %s failed in %s: %s",
            plugin,
            stage,
            message,
            extra={
                "plugin": plugin,
                "stage": stage,
                "traceback": "".join(traceback.format_exception(exc)) if exc else None,
            },
        )
