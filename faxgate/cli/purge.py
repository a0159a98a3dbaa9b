"""`faxgate purge [--dry-run]`: one pass of document retention now ([retention] documents)."""

from __future__ import annotations

import argparse

from faxgate.cli import common
from faxgate.cli.common import Subparsers


def register(subparsers: Subparsers) -> None:
    purge = subparsers.add_parser(
        "purge",
        help="remove the documents [retention] documents no longer keeps, now",
        description="Removes the documents of faxes that ended longer ago than [retention] "
        "documents (their files in this host's spool and, on PostgreSQL, their bytes in the "
        "database); the jobs, their history and their notifications stay. The daemon does "
        "the same every [retention] interval.",
    )
    purge.add_argument(
        "--dry-run", action="store_true", help="print what would be removed; change nothing"
    )
    purge.add_argument("--json", action="store_true", help="print the counts as JSON")
    purge.set_defaults(func=purge_command)


def purge_command(args: argparse.Namespace) -> int:
    from faxgate.store.retention import purge

    settings = common.settings_from(args)
    keep = settings.retention.documents
    with common.open_store(settings) as store:
        report = purge(store, settings.spool_dir, keep, dry_run=args.dry_run)
    marked = report.marked
    if args.json:
        common.print_json(
            {
                "dry_run": report.dry_run,
                "keep": None if keep is None else keep.total_seconds(),
                "jobs": len(marked.jobs),
                "inbound": len(marked.inbound),
                "documents": marked.documents,
                "bytes": marked.bytes,
                "files": report.files,
                "file_bytes": report.file_bytes,
            }
        )
        return common.EXIT_OK
    if keep is None:
        print("[retention] documents is off: documents are kept forever; nothing removed")
        return common.EXIT_OK
    verb = "would remove" if report.dry_run else "removed"
    print(
        f"{verb} {marked.documents} documents ({marked.bytes} bytes) of {len(marked.jobs)} jobs"
        f" and {len(marked.inbound)} inbound faxes"
    )
    if not report.dry_run:
        print(f"deleted {report.files} files ({report.file_bytes} bytes) from {settings.spool_dir}")
    return common.EXIT_OK
