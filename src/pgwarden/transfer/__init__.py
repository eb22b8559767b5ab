"""Move data between PostgreSQL databases safely: selective export, import, anonymization.

The export half: :mod:`pgwarden.transfer.export` (bundles), :mod:`~pgwarden.transfer.csvio`
(single tables), :mod:`~pgwarden.transfer.filters` (the ``--where`` language),
:mod:`~pgwarden.transfer.subset` (foreign-key closure) and
:mod:`~pgwarden.transfer.transforms` (anonymization). The bundle format both halves share
is :mod:`pgwarden.transfer.bundle`. See docs/transfer.md.
"""

from __future__ import annotations

from pgwarden.transfer.bundle import Bundle, BundleError, BundleTable, read_bundle
from pgwarden.transfer.csvio import TableFile, export_table
from pgwarden.transfer.export import (
    ExportResult,
    TableReport,
    export_bundle,
    export_personal_data,
)
from pgwarden.transfer.transforms import (
    TableTransform,
    TransformSpec,
    compile_transforms,
    load_transforms,
)

__all__ = [
    "Bundle",
    "BundleError",
    "BundleTable",
    "ExportResult",
    "TableFile",
    "TableReport",
    "TableTransform",
    "TransformSpec",
    "compile_transforms",
    "export_bundle",
    "export_personal_data",
    "export_table",
    "load_transforms",
    "read_bundle",
]
