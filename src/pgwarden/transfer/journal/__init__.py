"""Record every import and erase as a run, and undo one exactly.

:mod:`.runs` keeps the journal (``list_runs``, ``get_run``, ``purge_run``);
:mod:`.rollback` undoes a run, or refuses when its rows changed since; :mod:`.erase`
erases one person's rows (deleted or anonymized, following foreign keys) as a run that
can itself be rolled back.
"""
