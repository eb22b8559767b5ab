"""Import a bundle or a CSV file into a database: insert, upsert or replace, in one transaction.

:mod:`.importer` is the public face (``import_bundle``, ``import_csv``); :mod:`._job` runs
one import, :mod:`._staging` copies each table's rows into a typed stage, :mod:`._merge`
inserts, upserts and deletes from it (writing the journal), :mod:`._clauses` writes the
SQL that names a target's parts, :mod:`._fit` checks a bundle's schema against the
target's, and :mod:`.reports` holds what an import reports. The target's tables, keys and
triggers are read by :mod:`pgwarden.transfer.catalog`, the model the export uses too.
"""
