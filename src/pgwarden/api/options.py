"""How the admin API behaves: its prefix, who may read, caches, limits and cookies."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ApiOptions"]


@dataclass(frozen=True)
class ApiOptions:
    """Options of :func:`pgwarden.api.router`, each with a default fit for production.

    ``prefix`` is where the routes live. ``anonymous_read`` lets a request with no token
    call the read routes (a token presented must still be valid); it never opens a
    changing route. ``summary_ttl_s`` is how long the doctor's summary is served from
    memory; for ``summary_stale_s`` more it is still served while one run refreshes it
    (no request waits for the doctor once it ran). ``advice_ttl_s`` is the index
    advice's, ``readiness_ttl_s`` the readiness ping's: however many requests come, the
    database sees one run per period.
    ``token_cache_s`` is how long a checked token is remembered, so a revocation made by
    another process takes effect within that time (at once in this one).
    ``rate_limit`` changing calls per token are allowed in any ``rate_window_s`` seconds.
    ``cors_origins`` empty (the default) adds no CORS headers at all.
    ``trust_forwarded_prefix`` makes the dashboard's links and cookie honour a reverse
    proxy's ``X-Forwarded-Prefix`` header; turn it on only behind a proxy that sets it.
    ``dashboard`` False leaves the HTML pages out. ``observe`` instruments the API's own
    engine (:func:`pgwarden.observe.instrument`), so ``/metrics`` has its statements and
    pool; ``pgwarden serve`` turns it on, a host application decides for itself.
    ``fleet_config`` is the config file whose ``[targets.NAME]`` the fleet routes show
    (default: ``PGWARDEN_CONFIG``, else ``./pgwarden.toml``).
    """

    prefix: str = "/v1/database"
    anonymous_read: bool = False
    summary_ttl_s: float = 10.0
    summary_stale_s: float = 60.0
    advice_ttl_s: float = 300.0
    readiness_ttl_s: float = 1.0
    token_cache_s: float = 10.0
    rate_limit: int = 30
    rate_window_s: float = 60.0
    cors_origins: tuple[str, ...] = ()
    trust_forwarded_prefix: bool = False
    dashboard: bool = True
    cookie_name: str = "pgwarden_session"
    observe: bool = False
    fleet_config: str | None = None
