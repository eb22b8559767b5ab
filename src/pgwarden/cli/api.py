"""``pgwarden serve`` (the admin API and dashboard) and ``pgwarden tokens``."""

from __future__ import annotations

import click

from pgwarden.cli.context import Context, pass_context
from pgwarden.cli.render import dump_json, table

__all__ = ["serve", "tokens"]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--prefix", default="/v1/database", show_default=True, help="Where the routes live.")
@click.option(
    "--anonymous-read", is_flag=True,
    help="Let requests without a token call the read routes (never the changing ones).",
)  # fmt: skip
@click.option(
    "--root-path", default="", metavar="PATH",
    help="The path a reverse proxy serves this under (e.g. /pgwarden).",
)  # fmt: skip
@click.option(
    "--trust-forwarded-prefix", is_flag=True,
    help="Honour the proxy's X-Forwarded-Prefix header in links and cookies.",
)  # fmt: skip
@click.option(
    "--cors-origin", "cors_origins", multiple=True, metavar="ORIGIN",
    help="Allow browsers on ORIGIN to call the API (repeatable; none by default).",
)  # fmt: skip
@click.option(
    "--summary-ttl", type=click.FloatRange(min=0), default=10.0, show_default=True,
    metavar="SECONDS", help="How long the doctor's summary is served from memory.",
)  # fmt: skip
@click.option("--no-dashboard", is_flag=True, help="Serve the JSON API only.")
@pass_context
def serve(
    state: Context,
    host: str,
    port: int,
    prefix: str,
    anonymous_read: bool,
    root_path: str,
    trust_forwarded_prefix: bool,
    cors_origins: tuple[str, ...],
    summary_ttl: float,
    no_dashboard: bool,
) -> None:
    """Serve the admin API and the dashboard over HTTP with uvicorn.

    The routes live under --prefix; the OpenAPI document at /openapi.json and the
    dashboard at PREFIX/dashboard/. Every route but health needs a token
    (`pgwarden tokens create`). Backups go to PGWARDEN_BACKUP_STORAGE.

    \b
    Example:
      pgwarden serve --port 8000 --root-path /pgwarden
    """
    import uvicorn

    from pgwarden.api import create_app

    settings = state.settings.model_copy(update={"database_url": state.resolve_url()})
    app = create_app(
        settings,
        prefix=prefix,
        anonymous_read=anonymous_read,
        trust_forwarded_prefix=trust_forwarded_prefix,
        cors_origins=cors_origins,
        summary_ttl_s=summary_ttl,
        dashboard=not no_dashboard,
        observe=True,
    )
    uvicorn.run(app, host=host, port=port, root_path=root_path, log_level="warning")


@click.group()
def tokens() -> None:
    """Create, list and revoke the admin API's tokens, and read the audit record.

    \b
    Example:
      pgwarden tokens create --scope read --name grafana
    """


@tokens.command("create")
@click.option(
    "--scope", type=click.Choice(["read", "operate", "admin"]), required=True,
    help="read: every read route; operate: also cancel, maintenance, snapshots; "
    "admin: also backups, restores and the audit record.",
)  # fmt: skip
@click.option("--name", default=None, help="What the token is for (default: the scope).")
@pass_context
def create_command(state: Context, scope: str, name: str | None) -> None:
    """Create a token and print its secret, which is shown this once only.

    \b
    Example:
      pgwarden tokens create --scope operate --name on-call
    """
    from pgwarden.api.tokens import create_token

    with state.connect() as conn:
        created = create_token(conn, scope=scope, name=name)
        conn.commit()
    if state.json:
        dump_json(state.console, {"token": created.token, "secret": created.secret})
        return
    token = created.token
    state.console.print(f"token {token.id} ({token.name}, scope {token.scope}):")
    state.console.print(created.secret, soft_wrap=True)
    state.console.print("Keep it now: it cannot be shown again.")


@tokens.command("list")
@click.option("--revoked", is_flag=True, help="Include revoked tokens.")
@pass_context
def list_command(state: Context, revoked: bool) -> None:
    """List the tokens (never their secrets).

    \b
    Example:
      pgwarden tokens list --revoked
    """
    from pgwarden.api.tokens import list_tokens

    with state.connect() as conn:
        found = list_tokens(conn, revoked=revoked)
    if state.json:
        dump_json(state.console, {"tokens": found})
        return
    rows = (
        (t.id, t.name, t.scope, f"{t.created_at:%Y-%m-%d %H:%M}",
         "-" if t.revoked_at is None else f"{t.revoked_at:%Y-%m-%d %H:%M}")
        for t in found
    )  # fmt: skip
    state.console.print(table(["id", "name", "scope", "created", "revoked"], rows))


@tokens.command("revoke")
@click.argument("token_id", type=click.IntRange(min=1))
@pass_context
def revoke_command(state: Context, token_id: int) -> None:
    """Revoke token TOKEN_ID: API servers refuse it within their token cache time (10 s).

    \b
    Example:
      pgwarden tokens revoke 12
    """
    from pgwarden.api.tokens import revoke_token

    with state.connect() as conn:
        token = revoke_token(conn, token_id)
        conn.commit()
    if state.json:
        dump_json(state.console, token)
        return
    state.console.print(f"token {token.id} ({token.name}) is revoked.")


@tokens.command("audit")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@pass_context
def audit_command(state: Context, limit: int) -> None:
    """List the latest changing calls made through the API, newest first.

    \b
    Example:
      pgwarden tokens audit --limit 20
    """
    from pgwarden.api.audit import audit_entries

    with state.connect() as conn:
        found = audit_entries(conn, limit=limit)
    if state.json:
        dump_json(state.console, {"audit": found})
        return
    rows = (
        (e.id, f"{e.at:%Y-%m-%d %H:%M:%S}", "-" if e.token_id is None else e.token_id,
         f"{e.method} {e.route}", e.outcome, e.status)
        for e in found
    )  # fmt: skip
    state.console.print(table(["id", "at", "token", "call", "outcome", "status"], rows))
