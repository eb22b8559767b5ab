"""Import what an extra installs, and name the extra when it is missing.

A dependency that only one area needs is an extra (``pip install 'pgwarden[metrics]'``),
imported where it is used inside :func:`importing_extra`, so that a missing one gives a
:class:`~pgwarden.errors.NotEnabled` naming the extra instead of an ImportError::

    with importing_extra("metrics", "Prometheus metrics need {package}", PROMETHEUS):
        from prometheus_client import Counter
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from pgwarden.errors import NotEnabled

__all__ = ["importing_extra"]


@contextmanager
def importing_extra(extra: str, needs: str, packages: Mapping[str, str]) -> Iterator[None]:
    """Turn a missing package of ``extra`` into :class:`NotEnabled` naming the extra.

    ``packages`` maps each top-level module the extra installs to the name it is
    installed by (``{"prometheus_client": "prometheus-client"}``); ``needs`` says what
    needs it, with ``{package}`` where that name goes. Any other ImportError (a bug, a
    broken install of something else) passes through unchanged.
    """
    try:
        yield
    except ImportError as exc:
        module = (exc.name or "").partition(".")[0]
        if module not in packages:
            raise
        raise NotEnabled(
            needs.format(package=packages[module]) + ", which is not installed.",
            hint=f"Install pgwarden with the {extra} extra: pip install 'pgwarden[{extra}]'.",
        ) from None
