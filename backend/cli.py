"""The ``confide`` command: serve, migrate, bootstrap an admin, print the OpenAPI document."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Sequence

import msgspec

from backend.settings import Settings, SettingsError, load_settings

__all__ = ["main"]


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        print(f"confide: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def _database_url(settings: Settings) -> str:
    from backend.db.database import resolve_database_url  # noqa: PLC0415 -- starts PostgreSQL only when needed

    url = resolve_database_url(settings)
    # Worker processes inherit the resolved URL instead of each starting a cluster.
    os.environ["CONFIDE_DATABASE_URL"] = url
    return url


def cmd_migrate(_: argparse.Namespace) -> int:
    """Apply pending migrations."""
    from backend.db.migrate import migrate  # noqa: PLC0415

    settings = _settings()
    applied = asyncio.run(migrate(_database_url(settings)))
    print(f"migrations applied: {len(applied)}" + (f" ({', '.join(applied)})" if applied else ""))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the API."""
    settings = _settings()
    _database_url(settings)
    host = args.host or settings.host
    port = args.port or settings.port
    workers = args.workers or settings.workers
    server = args.server or settings.server
    if server == "granian":
        from granian.constants import Interfaces  # noqa: PLC0415
        from granian.server import Server  # noqa: PLC0415

        Server(
            "backend.app:create_app_from_env",
            address=host,
            port=port,
            interface=Interfaces.ASGI,
            workers=workers,
            factory=True,
            log_access=False,
        ).serve()
        return 0
    import uvicorn  # noqa: PLC0415

    uvicorn.run(
        "backend.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_config=None,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=10,
    )
    return 0


def cmd_openapi(_: argparse.Namespace) -> int:
    """Print the OpenAPI document the app generates."""
    from backend.openapi_doc import render_openapi  # noqa: PLC0415

    sys.stdout.write(render_openapi())
    return 0


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password for the new admin: ")
    if first != getpass.getpass("Repeat the password: "):
        raise SystemExit("confide: the passwords differ")
    return first


def cmd_admin_create(args: argparse.Namespace) -> int:
    """Create an organization's first admin."""
    import asyncpg  # noqa: PLC0415

    from backend.accounts.service import bootstrap_admin  # noqa: PLC0415
    from backend.audit_trail import AuditContext  # noqa: PLC0415
    from backend.auth.passwords import PasswordService  # noqa: PLC0415
    from backend.clock import SystemClock  # noqa: PLC0415
    from backend.errors import DomainError  # noqa: PLC0415
    from backend.runtime import Runtime  # noqa: PLC0415
    from backend.server_keys import ServerKeys  # noqa: PLC0415

    settings = _settings()
    password = _read_password(args)
    dsn = _database_url(settings)

    async def run() -> int:
        runtime = Runtime(
            settings=settings,
            clock=SystemClock(),
            passwords=PasswordService(settings),
            keys=ServerKeys(settings.server_key()),
            instance_id="cli",
        )
        conn = await asyncpg.connect(dsn)
        try:
            view = await bootstrap_admin(
                runtime,
                conn,
                org_slug=args.organization,
                org_name=args.organization_name or args.organization,
                email=args.email,
                display_name=args.name,
                password=password,
                ctx=AuditContext(source_instance="cli"),
            )
        except DomainError as exc:
            print(f"confide: {exc.detail}", file=sys.stderr)
            return 1
        finally:
            await conn.close()
            runtime.passwords.close()
        print(msgspec.json.encode(view).decode())
        return 0

    return asyncio.run(run())


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="confide", description="Confide clinical messaging backend")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the API (127.0.0.1:8000 by default)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--server", choices=["uvicorn", "granian"])
    serve.set_defaults(func=cmd_serve)

    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    sub.add_parser("openapi", help="print the OpenAPI document").set_defaults(func=cmd_openapi)

    admin = sub.add_parser("admin", help="administration").add_subparsers(dest="admin_command", required=True)
    create = admin.add_parser("create", help="create an organization's first admin")
    create.add_argument("--organization", required=True, help="organization slug (created if new)")
    create.add_argument("--organization-name", help="display name of a new organization")
    create.add_argument("--email", required=True)
    create.add_argument("--name", required=True, help="the admin's display name")
    create.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    create.set_defaults(func=cmd_admin_create)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``confide`` console script."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
