"""The ``confide`` command: serve, migrate, bootstrap an admin, OpenAPI, the audit log tools, export open."""

from __future__ import annotations

import argparse
import asyncio
import functools
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


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply pending migrations; then, if asked, grant the application role its privileges."""
    import asyncpg  # noqa: PLC0415

    from backend.db.migrate import migrate  # noqa: PLC0415

    settings = _settings()
    dsn = _database_url(settings)
    applied = asyncio.run(migrate(dsn))
    print(f"migrations applied: {len(applied)}" + (f" ({', '.join(applied)})" if applied else ""))
    if args.grant_app_role:

        async def grant() -> None:
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute("SELECT confide_grant_app_role($1)", args.grant_app_role)
            finally:
                await conn.close()

        try:
            asyncio.run(grant())
        except asyncpg.PostgresError as exc:
            print(f"confide: granting {args.grant_app_role!r} failed: {exc}", file=sys.stderr)
            return 1
        print(f"privileges granted to {args.grant_app_role}")
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
        from granian.http import HTTP1Settings  # noqa: PLC0415
        from granian.server import Server  # noqa: PLC0415

        Server(
            "backend.app:create_app_from_env",
            address=host,
            port=port,
            interface=Interfaces.ASGI,
            workers=workers,
            factory=True,
            log_access=False,
            http1_settings=HTTP1Settings(header_read_timeout=int(settings.header_timeout_s * 1000)),
        ).serve()
        return 0
    import uvicorn  # noqa: PLC0415

    from backend.http.server_protocol import HeaderTimeoutProtocol  # noqa: PLC0415

    uvicorn.run(
        "backend.app:create_app_from_env",
        factory=True,
        # HTTP/1.1 with a deadline for each request's head (picklable for --workers).
        http=functools.partial(HeaderTimeoutProtocol, header_timeout_s=settings.header_timeout_s),  # type: ignore[arg-type]
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_config=None,
        server_header=False,
        # Forwarded headers only from the configured proxies (none by default).
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=list(settings.forwarded_allow_ips) or None,
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


def _vkey(value: str) -> str:
    """A verifier key given inline or as ``@file``."""
    if value.startswith("@"):
        from pathlib import Path  # noqa: PLC0415

        return Path(value[1:]).read_text(encoding="ascii").strip()
    return value


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Verify an export offline (audit package only)."""
    from audit.cli import verify_command  # noqa: PLC0415

    return verify_command(
        args.file,
        [_vkey(k) for k in args.log_key],
        out=sys.stdout,
        witness_keys=[_vkey(k) for k in args.witness_key or []],
        require_complete=args.require_complete,
    )


def cmd_audit_consistency(args: argparse.Namespace) -> int:
    """Check a kept checkpoint against a newer one with the server's proof."""
    from audit.cli import consistency_command  # noqa: PLC0415

    return consistency_command(
        args.old, args.new, args.proof, [_vkey(k) for k in args.log_key], out=sys.stdout
    )


def cmd_audit_keygen(args: argparse.Namespace) -> int:
    """Create a log (or witness) signing key."""
    from audit.cli import keygen_command  # noqa: PLC0415

    return keygen_command(args.name, args.out, out=sys.stdout, witness=args.witness)


def cmd_audit_integrate(args: argparse.Namespace) -> int:
    """Move pending audit events into the log and sign checkpoints (once, or in a loop)."""
    import asyncpg  # noqa: PLC0415

    from backend.audit_trail.integrator import Integrator  # noqa: PLC0415
    from backend.audit_trail.log_key import log_signer  # noqa: PLC0415
    from backend.clock import SystemClock  # noqa: PLC0415

    settings = _settings()
    try:
        signer = log_signer(settings)
    except SettingsError as exc:
        print(f"confide: configuration error: {exc}", file=sys.stderr)
        return 2
    dsn = _database_url(settings)

    async def run() -> int:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
        try:
            integrator = Integrator(
                pool,
                signer,
                SystemClock(),
                batch=args.batch or settings.audit_integrate_batch,
                interval_s=settings.audit_integrate_interval_s,
            )
            await integrator.run(until_idle=not args.loop)
        finally:
            await pool.close()
        status = integrator.status
        print(f"integrated {status.integrated} events; tree size {status.size}; errors {status.errors}")
        return 1 if status.errors else 0

    return asyncio.run(run())


def cmd_audit_prune(args: argparse.Namespace) -> int:
    """Remove the leaf bytes of integrated events older than ``--before`` (hashes stay)."""
    import datetime as dt  # noqa: PLC0415

    import asyncpg  # noqa: PLC0415

    from backend.audit_trail.pruning import prune_addresses, prune_leaves  # noqa: PLC0415
    from backend.audit_trail.writer import AuditContext  # noqa: PLC0415
    from backend.clock import SystemClock  # noqa: PLC0415

    try:
        before = dt.datetime.fromisoformat(args.before)
    except ValueError:
        print("confide: --before must be an ISO 8601 date and time with a zone", file=sys.stderr)
        return 2
    if before.tzinfo is None:
        print("confide: --before must carry a time zone (e.g. 2020-01-01T00:00:00+00:00)", file=sys.stderr)
        return 2
    settings = _settings()
    dsn = _database_url(settings)

    async def run() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            ctx = AuditContext(source_instance="cli")
            count = await prune_leaves(conn, SystemClock(), before=before, ctx=ctx)
            addresses = await prune_addresses(
                conn, SystemClock(), older_than=dt.timedelta(days=args.address_days), ctx=ctx
            )
        finally:
            await conn.close()
        print(f"pruned {count} audit leaves recorded before {before.isoformat()}")
        print(f"deleted {addresses} raw client addresses older than {args.address_days} days")
        return 0

    return asyncio.run(run())


def cmd_audit_witness(args: argparse.Namespace) -> int:
    """Witness the log: accept only consistent checkpoints, cosign them."""
    from pathlib import Path  # noqa: PLC0415

    from audit.cli import EXIT_USAGE  # noqa: PLC0415
    from audit.errors import AuditFormatError  # noqa: PLC0415
    from audit.note import COSIGNATURE_V1, NoteSigner, VerifierKey  # noqa: PLC0415
    from backend.audit_trail.witness import HttpClient, WitnessError, witness_once  # noqa: PLC0415

    try:
        log_key = VerifierKey.parse(_vkey(args.log_key))
        witness = NoteSigner.parse(Path(args.key).read_text(encoding="ascii"), COSIGNATURE_V1)
        http = HttpClient(args.server, Path(args.token_file).read_text(encoding="ascii").strip())
    except (AuditFormatError, OSError, WitnessError) as exc:
        print(f"confide: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return witness_once(http, log_key=log_key, witness=witness, state_path=Path(args.state), out=sys.stdout)


def cmd_retention_run(args: argparse.Namespace) -> int:
    """Delete what is past its retention period, in committed batches (``--dry-run``: count only)."""
    from backend.retention.cli import run_command  # noqa: PLC0415 -- loads the service code only here

    settings = _settings()
    if args.batch_size is not None and not 1 <= args.batch_size <= 50_000:
        print("confide: --batch-size must be between 1 and 50000", file=sys.stderr)
        return 2
    return run_command(settings, _database_url(settings), args)


def _retention_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    retention = sub.add_parser("retention", help="retention of data (policies: GET /v1/retention/policies)")
    commands = retention.add_subparsers(dest="retention_command", required=True)
    run = commands.add_parser(
        "run",
        help="delete what is past its retention period, in batches (one run at a time)",
        description=(
            "Counts every category, then deletes in batches that each commit with an audit event; "
            "stopped at any point, the next run finishes the work. Progress goes to standard error, "
            "the summary table to standard output. Exit status 1 when another run is in progress."
        ),
    )
    run.add_argument("--dry-run", action="store_true", help="count what would be deleted; change nothing")
    run.add_argument(
        "--batch-size", type=int, help="rows per committed batch (default: CONFIDE_RETENTION_BATCH_SIZE)"
    )
    run.add_argument("--quiet", action="store_true", help="no progress display")
    run.set_defaults(func=cmd_retention_run)


def _audit_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="the verifiable audit log").add_subparsers(
        dest="audit_command", required=True
    )
    verify = audit.add_parser("verify", help="verify a JSON Lines export offline")
    verify.add_argument("file")
    verify.add_argument("--log-key", action="append", required=True, help="log verifier key (or @file)")
    verify.add_argument("--witness-key", action="append", help="require this witness's cosignature")
    verify.add_argument("--require-complete", action="store_true", help="refuse a filtered export")
    verify.set_defaults(func=cmd_audit_verify)

    consistency = audit.add_parser("consistency", help="check that a newer checkpoint extends a kept one")
    consistency.add_argument("old")
    consistency.add_argument("new")
    consistency.add_argument("--proof", required=True, help="file: one base64 hash per line")
    consistency.add_argument("--log-key", action="append", required=True, help="log verifier key (or @file)")
    consistency.set_defaults(func=cmd_audit_consistency)

    keygen = audit.add_parser("keygen", help="create a log (or witness) signing key")
    keygen.add_argument("--name", required=True, help="key name; for a log, the checkpoint origin")
    keygen.add_argument("--out", required=True, help="secret key file to create (mode 0600)")
    keygen.add_argument("--witness", action="store_true", help="a witness cosigning key (type 0x04)")
    keygen.set_defaults(func=cmd_audit_keygen)

    integrate = audit.add_parser("integrate", help="integrate pending events and sign a checkpoint")
    integrate.add_argument("--loop", action="store_true", help="keep running")
    integrate.add_argument("--batch", type=int, help="events per batch")
    integrate.set_defaults(func=cmd_audit_integrate)
    prune = audit.add_parser("prune", help="remove leaf bytes past their retention (hashes stay)")
    prune.add_argument(
        "--before", required=True, help="prune events recorded before this time (ISO 8601, with zone)"
    )
    prune.add_argument(
        "--address-days", type=int, default=30, help="keep raw client addresses this many days (default 30)"
    )
    prune.set_defaults(func=cmd_audit_prune)

    witness = audit.add_parser("witness", help="witness the log and cosign consistent checkpoints")
    witness.add_argument("--server", required=True, help="base URL of the Confide API")
    witness.add_argument("--state", required=True, help="file keeping the last accepted checkpoint")
    witness.add_argument("--key", required=True, help="the witness's secret key file")
    witness.add_argument("--log-key", required=True, help="the log's verifier key (or @file)")
    witness.add_argument("--token-file", required=True, help="a compliance officer's session token")
    witness.set_defaults(func=cmd_audit_witness)


def cmd_export_open(args: argparse.Namespace) -> int:
    """Open a data-subject export on the person's own device (never on the server)."""
    from pathlib import Path  # noqa: PLC0415

    # Secret-key code, loaded only by this command (pyproject.toml: the one import exception).
    from crypto.cli_export import open_command  # noqa: PLC0415

    return open_command(
        Path(args.archive),
        Path(args.out),
        fmt=args.format,
        passphrase_file=Path(args.passphrase_file) if args.passphrase_file else None,
        key_backups=[Path(p) for p in args.key_backup or []],
        server_key=args.server_key,
        out=sys.stdout,
        err=sys.stderr,
    )


def _export_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = sub.add_parser("export", help="your data-subject export (GET /v1/me/export)").add_subparsers(
        dest="export_command", required=True
    )
    opener = export.add_parser(
        "open",
        help="verify an export and write a readable copy with your keys",
        description=(
            "Verifies the archive (digest, counts, server signature), unlocks your private keys from "
            "the key backup in it with your passphrase (from --passphrase-file or a prompt, never an "
            "argument), decrypts what they open and writes a readable copy (mode 0600) to --out."
        ),
    )
    opener.add_argument("archive", help="the downloaded export (JSON Lines)")
    opener.add_argument("--out", required=True, help="readable copy to create (must not exist)")
    opener.add_argument("--format", choices=["markdown", "json"], default="markdown")
    opener.add_argument("--passphrase-file", help="file whose first line is the key backup passphrase")
    opener.add_argument(
        "--key-backup", action="append", help="an older key backup (JSON) for earlier key versions"
    )
    opener.add_argument(
        "--server-key", help="the server's receipt key (base64, GET /v1/consents/receipt-key) to require"
    )
    opener.set_defaults(func=cmd_export_open)


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

    migrate = sub.add_parser("migrate", help="apply database migrations (as the schema owner)")
    migrate.add_argument(
        "--grant-app-role",
        metavar="ROLE",
        help="then give this application role its least privileges (deploy/postgres/roles.sql)",
    )
    migrate.set_defaults(func=cmd_migrate)
    sub.add_parser("openapi", help="print the OpenAPI document").set_defaults(func=cmd_openapi)
    _retention_parser(sub)

    admin = sub.add_parser("admin", help="administration").add_subparsers(dest="admin_command", required=True)
    create = admin.add_parser("create", help="create an organization's first admin")
    create.add_argument("--organization", required=True, help="organization slug (created if new)")
    create.add_argument("--organization-name", help="display name of a new organization")
    create.add_argument("--email", required=True)
    create.add_argument("--name", required=True, help="the admin's display name")
    create.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    create.set_defaults(func=cmd_admin_create)
    _audit_parser(sub)
    _export_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``confide`` console script."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
