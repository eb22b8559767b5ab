"""Export chosen rows: whole bundles, personal data, or one table to CSV or JSON lines.

:mod:`.bundles` exports a bundle (its tables in load order, their foreign-key closure)
and :mod:`.bundle_files` writes its data files and manifest; :mod:`.csvio` writes one
table; :mod:`.filters` parses and checks the ``--where`` language; :mod:`.subset` closes
a selection over foreign keys; :mod:`._copyout` and :mod:`._psqlread` copy rows out of
the export's snapshot, through its connection or a psql child. The public names are
re-exported by :mod:`pgwarden.transfer`.
"""
