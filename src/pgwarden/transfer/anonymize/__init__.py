"""Anonymize rows as they pass: transforms declared per table and column, applied in a stream.

:mod:`.transforms` loads a spec (TOML, YAML or Python) and compiles it for a table;
:mod:`._values`, :mod:`._hashes` and :mod:`._fakes` are the value functions (keyed hashes,
noise, fakes that keep a value's shape), keyed by :mod:`._prf`; :mod:`._rewrite` runs them
over COPY chunks in the forked processes of :mod:`._workers`. The export and the import
both use it.
"""
