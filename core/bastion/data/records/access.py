"""Who may do what: object permission, record scope and field-level security.

Every read and write of the service passes through these checks (``bastion.authz``
decides; this mixin asks it once per object and remembers field access).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Table, false, select

from bastion import authz
from bastion.data.catalog import Catalog, FieldMeta, ObjectMeta, UnknownObject
from bastion.data.errors import BadQuery, Forbidden, NotFound
from bastion.data.formulas import referenced_names
from bastion.data.records.model import MAX_LIMIT
from bastion.db import db

#: Actions refused to every user on a ``system_only`` object (merge = edit + delete).
WRITE_ACTIONS = frozenset({"create", "edit", "delete", "import"})


class AccessMixin:
    """Authorization of the acting user; ``system`` services pass every check."""

    user: Any
    system: bool
    catalog: Catalog
    _access: dict[str, dict[str, str]]

    def object(self, name: str) -> ObjectMeta:
        try:
            return self.catalog.get(name)
        except UnknownObject:
            raise NotFound(f"There is no object {name!r}.") from None

    def can(self, object_name: str, action: str) -> bool:
        if self.system:
            return True
        meta = self.catalog.objects.get(object_name)
        if meta is not None and meta.system_only and action in WRITE_ACTIONS:
            return False
        return authz.object_decision(self.user, object_name, action).allowed

    def require(self, object_name: str, action: str) -> ObjectMeta:
        meta = self.object(object_name)
        if self.system:
            return meta
        if meta.system_only and action in WRITE_ACTIONS:
            # Kept by the platform or its plugin (a history, a computed log): no role,
            # not even an administrator's, grants writing it.
            raise Forbidden(
                f"{meta.label_plural} are maintained by the system: you may read them, "
                f"not {action} them."
            )
        decision = authz.object_decision(self.user, object_name, action)
        if not decision.allowed:
            raise Forbidden(f"You may not {action} {meta.label_plural.lower()}.")
        return meta

    def field_access(self, meta: ObjectMeta) -> dict[str, str]:
        """Field name -> "edit", "read" or "hidden" for this user (computed once)."""
        found = self._access.get(meta.name)
        if found is not None:
            return found
        access: dict[str, str] = {}
        for name, item in meta.fields.items():
            if self.system:
                level = "edit"
            elif item.standard:
                level = "read"
            else:
                level = authz.field_access(self.user, meta.name, name)
            if not item.writable and level == "edit":
                level = "read"
            if (item.read_only or meta.system_only) and level == "edit" and not self.system:
                level = "read"  # the declaring plugin sets it (``record_changing``)
            if name == "owner" and not self.system:
                level = "edit" if self._may_write(meta) else "read"
            access[name] = level
        # A formula over a hidden field would reveal it: hide the formula too, and any
        # formula reading that formula (repeat until nothing more is hidden).
        changed = True
        while changed:
            changed = False
            for name, item in meta.fields.items():
                if item.type != "formula" or not item.formula or access.get(name) == "hidden":
                    continue
                if any(access.get(ref) == "hidden" for ref in referenced_names(item.formula)):
                    access[name] = "hidden"
                    changed = True
        self._access[meta.name] = access
        return access

    def refresh_access(self) -> None:
        """Forget what is known of the user's rights, for jobs that commit as they go.

        Objects are not expired on commit and decisions are kept for the request, so a
        long job (an import) calls this between its steps: a user disabled or stripped
        of a role meanwhile is refused from the next step on.
        """
        if self.system:
            return
        db.session.expire_all()  # the user, their roles and the roles' rules
        authz.forget_cached()
        self._access.clear()

    def _acting_user_id(self) -> int | None:
        """The signed-in user's id; None for the system."""
        return None if self.system or self.user is None else self.user.id

    def _may_write(self, meta: ObjectMeta) -> bool:
        return self.can(meta.name, "edit") or self.can(meta.name, "create")

    def readable(self, meta: ObjectMeta) -> list[FieldMeta]:
        access = self.field_access(meta)
        return [item for name, item in meta.fields.items() if access.get(name) != "hidden"]

    def editable(self, meta: ObjectMeta) -> list[FieldMeta]:
        access = self.field_access(meta)
        return [item for name, item in meta.fields.items() if access.get(name) == "edit"]

    def readable_field(self, meta: ObjectMeta, name: str) -> FieldMeta:
        """A field the user may read; unknown, removed and hidden fields look the same."""
        item = meta.fields.get(name)
        if item is None or self.field_access(meta).get(name) == "hidden":
            raise BadQuery(f"{meta.label} has no field {name!r}.", field=name)
        return item

    def _scope(self, meta: ObjectMeta, table: Table) -> Any:
        """The condition limiting ``table`` to the records the user may read, or None."""
        if self.system:
            return None
        owners = authz.reachable_owner_ids(self.user, meta.name, "read")
        if owners is None:
            return None
        if not owners:
            return false()
        return table.c.owner.in_(sorted(owners))

    def _in_scope(self, meta: ObjectMeta, table: Table, statement: Any) -> Any:
        """``statement`` limited to the records of ``table`` the user may read."""
        scope = self._scope(meta, table)
        return statement if scope is None else statement.where(scope)

    def _reaches(self, meta: ObjectMeta, action: str, owner_id: int | None) -> bool:
        if self.system:
            return True
        return authz.record_decision(self.user, meta.name, action, owner_id).allowed

    def _visible_ids(self, target: ObjectMeta, ids: Iterable[int]) -> set[int]:
        """Those of ``ids`` that are records of ``target`` within the user's scope."""
        wanted = sorted(set(ids))
        table = self.catalog.table(target.name)
        found: set[int] = set()
        for start in range(0, len(wanted), MAX_LIMIT):
            statement = select(table.c.id).where(table.c.id.in_(wanted[start : start + MAX_LIMIT]))
            found.update(db.session.execute(self._in_scope(target, table, statement)).scalars())
        return found
