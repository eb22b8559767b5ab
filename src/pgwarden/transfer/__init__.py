"""Move chosen rows between PostgreSQL databases safely: export, anonymize, import, undo.

The package has four rooms and a few shared pieces; every public name is importable from
here. See docs/transfer.md.

- :mod:`~pgwarden.transfer.export`: :mod:`~.export.bundles` (:func:`export_bundle`,
  :func:`export_personal_data`), :mod:`~.export.csvio` (:func:`export_table`, one table),
  :mod:`~.export.filters` (the ``--where`` language), :mod:`~.export.subset`
  (foreign-key closure), and the readers that copy rows out of a snapshot.
- :mod:`~pgwarden.transfer.anonymize`: :mod:`~.anonymize.transforms`
  (:func:`load_transforms`, :class:`TransformSpec`) and the fakes, keyed hashes and worker
  processes that rewrite rows on their way out or in.
- :mod:`~pgwarden.transfer.load`: :mod:`~.load.importer` (:func:`import_bundle`,
  :func:`import_csv`), staging, the merge (insert, upsert, replace) and
  :mod:`~.load.reports` (:class:`ImportReport`).
- :mod:`~pgwarden.transfer.journal`: :mod:`~.journal.runs` (:func:`list_runs`,
  :func:`get_run`, :func:`purge_run`), :mod:`~.journal.rollback` (:func:`rollback_run`)
  and :mod:`~.journal.erase` (:func:`erase_user`).

Shared by the rooms: :mod:`~.bundle` (the bundle format, and reading it; the export
writes it with :mod:`~.export.bundle_files`), :mod:`~.catalog` (one model of the tables,
keys and triggers of a source or a target), :mod:`~.copytext` (COPY text lines),
:mod:`~.progress` (progress events) and :mod:`~.errors`.
"""

from __future__ import annotations

from pgwarden.transfer.anonymize.transforms import (
    TableTransform,
    TransformSpec,
    compile_transforms,
    load_transforms,
)
from pgwarden.transfer.bundle import Bundle, BundleTable, read_bundle
from pgwarden.transfer.errors import BundleError, ImportFailed, RollbackRefused
from pgwarden.transfer.export.bundles import (
    ExportedTable,
    ExportResult,
    export_bundle,
    export_personal_data,
)
from pgwarden.transfer.export.csvio import TableFile, export_table
from pgwarden.transfer.journal.erase import EraseReport, EraseTable, erase_user
from pgwarden.transfer.journal.rollback import (
    ChangedRow,
    RollbackReport,
    RollbackTable,
    rollback_run,
)
from pgwarden.transfer.journal.runs import Run, get_run, list_runs, purge_run
from pgwarden.transfer.load.importer import import_bundle, import_csv
from pgwarden.transfer.load.reports import ImportedTable, ImportReport, RowError
from pgwarden.transfer.progress import TransferProgress

__all__ = [
    "Bundle",
    "BundleError",
    "BundleTable",
    "ChangedRow",
    "EraseReport",
    "EraseTable",
    "ExportResult",
    "ExportedTable",
    "ImportFailed",
    "ImportReport",
    "ImportedTable",
    "RollbackRefused",
    "RollbackReport",
    "RollbackTable",
    "RowError",
    "Run",
    "TableFile",
    "TableTransform",
    "TransferProgress",
    "TransformSpec",
    "compile_transforms",
    "erase_user",
    "export_bundle",
    "export_personal_data",
    "export_table",
    "get_run",
    "import_bundle",
    "import_csv",
    "list_runs",
    "load_transforms",
    "purge_run",
    "read_bundle",
    "rollback_run",
]
