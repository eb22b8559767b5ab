"""The error tree: errors cross process boundaries whole (the export's transform workers)."""

from __future__ import annotations

import pickle

from pgwarden.errors import PgwardenError, UserError
from pgwarden.transfer import RollbackRefused


def test_an_error_keeps_its_hint_and_class_through_pickle() -> None:
    error = pickle.loads(pickle.dumps(UserError("no such table", hint="list them first")))  # noqa: S301
    assert type(error) is UserError
    assert (str(error), error.hint, error.exit_code) == ("no such table", "list them first", 2)


def test_an_error_whose_init_takes_other_arguments_comes_back_whole() -> None:
    refused = RollbackRefused(7, [], 3, "see the journal", by_xmin=True)
    error = pickle.loads(pickle.dumps(refused))  # noqa: S301  # our own bytes
    assert type(error) is RollbackRefused and isinstance(error, PgwardenError)
    assert (error.message, error.hint, error.run_id) == (refused.message, refused.hint, 7)
    assert error.changed == [] and "3 row(s) changed" in str(error)
