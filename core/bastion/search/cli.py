"""`bastion search reindex` and `bastion search status`."""

from __future__ import annotations

import time

import click
from flask import Flask

from bastion.cli import with_app


@click.group("search")
def search() -> None:
    """The search index: rebuild it, see its state."""


@search.command("reindex")
@click.option(
    "--object",
    "objects",
    multiple=True,
    metavar="NAME",
    help="Rebuild only this object's part of the index (repeatable).",
)
@click.option(
    "--wait",
    default=60,
    show_default=True,
    type=click.IntRange(0, 3600),
    help="Seconds to wait for a running server's indexer to finish its batch.",
)
@with_app
def reindex(app: Flask, objects: tuple[str, ...], wait: int) -> None:
    """Rebuild the search index from the records (servers may keep running)."""
    from bastion.data.catalog import current_catalog
    from bastion.data.records import RecordService
    from bastion.search import indexer_for
    from bastion.search.documents import searchable_fields
    from bastion.search.indexer import IndexerBusy

    catalog = current_catalog()
    active = {meta.name: meta for meta in catalog.active()}
    unknown = [name for name in objects if name not in active]
    if unknown:
        raise click.ClickException(
            f"There is no object {unknown[0]!r}; objects: {', '.join(sorted(active))}."
        )
    chosen = [active[name] for name in sorted(set(objects))] if objects else list(active.values())
    searchable = [meta for meta in chosen if searchable_fields(meta)]
    service = RecordService(None, system=True)
    total = sum(service.count(meta.name) for meta in searchable)
    started = time.monotonic()
    indexer = indexer_for(app)
    try:
        with click.progressbar(
            length=total, label="Indexing records", show_pos=True, show_percent=True
        ) as bar:
            written = indexer.rebuild(objects=objects or None, progress=bar.update, wait=wait)
    except IndexerBusy as exc:
        raise click.ClickException(str(exc)) from None
    seconds = time.monotonic() - started
    names = ", ".join(meta.name for meta in searchable) or "none"
    click.echo(
        f"Indexed {written} records of {len(searchable)} objects ({names}) in {seconds:.1f} s."
    )


@search.command("status")
@with_app
def status(app: Flask) -> None:
    """Show what the search index holds and what is waiting to be indexed."""
    from bastion.data.catalog import current_catalog
    from bastion.data.records import RecordService
    from bastion.runtime import platform
    from bastion.search import indexer_for
    from bastion.search.documents import searchable_fields

    indexer = indexer_for(app)
    state = indexer.backend.status()
    coverage = indexer.coverage()
    service = RecordService(None, system=True)
    click.echo(f"Index: {state.location}")
    size = "" if state.size is None else f" ({state.size / 1_048_576:.1f} MiB)"
    click.echo(f"Documents: {state.documents}{size}")
    click.echo(f"Waiting in the outbox: {indexer.pending()}")
    click.echo(f"Background indexer: {platform(app).settings.search_indexer}")
    for meta in sorted(current_catalog().active(), key=lambda m: m.name):
        fields = sorted(item.name for item in searchable_fields(meta))
        if not fields:
            continue
        entry = coverage.get(meta.name) or {}
        note = ""
        if entry.get("fields") != fields or entry.get("repair"):
            note = "  (being re-indexed: its searchable fields changed or it is new)"
        click.echo(
            f"  {meta.name:<24} {state.by_object.get(meta.name, 0):>9} indexed "
            f"{service.count(meta.name):>9} records  [{', '.join(fields)}]{note}"
        )
