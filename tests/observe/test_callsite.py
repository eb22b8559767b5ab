from __future__ import annotations

import json
import sqlite3

from pgwarden.observe.callsite import find_call_site, is_library_file


def test_library_and_application_files_are_told_apart() -> None:
    assert is_library_file(json.__file__)
    assert is_library_file(sqlite3.__file__)
    assert is_library_file(find_call_site.__code__.co_filename)  # pgwarden itself
    assert not is_library_file(__file__)
    assert is_library_file("<frozen importlib._bootstrap>")


def test_the_innermost_application_frame_is_found_through_library_code() -> None:
    # json.loads calls back into this file's hook, which asks for the call site.
    seen = []
    json.loads("{}", object_hook=lambda value: seen.append(find_call_site()) or value)
    [site] = seen
    assert site is not None
    assert site.filename == __file__ and site.function == "<lambda>"
