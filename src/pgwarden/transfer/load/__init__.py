"""Import a bundle or a CSV file into a database: insert, upsert or replace, in one transaction.

:mod:`.importer` is the public face (``import_bundle``, ``import_csv``); :mod:`._job` runs
one import, :mod:`._staging` copies each table's rows into a typed stage, :mod:`._merge`
inserts, upserts and deletes from it (writing the journal), :mod:`._target` reads the
target's tables, keys and triggers, :mod:`._fit` checks a bundle's schema against them,
and :mod:`.reports` holds what an import reports.
"""
