"""anthra-keys: serve the ledger, and operate on keys from a terminal.

A token is never taken as a command-line argument (it would land in shell history and `ps`):
a command that needs one reads ANTHRA_TOKEN or standard input.
"""

from __future__ import annotations

import argparse
import getpass
import importlib.util
import os
import secrets
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

import msgspec

from domain.actors import operator
from domain.api_key import EVENT_TYPES
from domain.errors import InvalidInput, LedgerError
from domain.scopes import SCOPES
from domain.webhook_endpoint import EVENT_TYPES as WEBHOOK_EVENT_TYPES
from infra.authjs_sessions import SessionTablesMissing
from infra.policy import PolicyError
from infra.settings import SERVERS, SettingsError, load_settings
from ledger.deadline import CONNECTION_ERRORS, OutcomeUnknown, StoreUnavailable, unavailable
from ledger.key_ledger import parse_key_id
from projections.audit_trail.view import MAX_PAGE, MAX_POSITION

if TYPE_CHECKING:
    from ledger.audit_trail import AuditTrail
    from ledger.key_ledger import KeyLedger


def _ledger() -> KeyLedger:
    from infra.backends import backend_for
    from infra.warm_start import warm_start
    from ledger.key_ledger import KeyLedger

    backend = backend_for(load_settings())
    ledger = KeyLedger(backend.store_env())
    view = backend.key_states_view(ledger)
    warm_start(ledger, ledger.read_states_from(view) if view is not None else None)
    return ledger


def _operator() -> str:
    try:
        return operator(getpass.getuser())
    except (KeyError, OSError):
        return operator("unknown")


def _print_json(value: object) -> None:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(value)).decode() + "\n")


def serve(args: argparse.Namespace) -> int:
    # Metrics of every worker add up through files in one folder; prometheus_client reads where
    # when it is first imported, so this comes before anything that imports it.
    import tempfile

    shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(
        prefix="anthra-metrics-"
    )
    os.makedirs(shared, exist_ok=True)
    for name in os.listdir(shared):  # an earlier run's counts are not this one's
        if name.endswith(".db"):
            os.remove(os.path.join(shared, name))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared
    from infra.backends import backend_for
    from infra.logging import configure_logging

    settings = load_settings()
    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    workers = args.workers or settings.workers
    server = args.server or settings.server
    configure_logging(settings.log_level, settings.log_json)
    if settings.authjs_database_url:
        _check_session_tables(settings.authjs_database_url)
    if settings.leak_keys_file:
        from infra.leak_reports import LeakReporters

        LeakReporters.load(settings.leak_keys_file)  # a wrong document stops the start here
    from infra import metrics

    metrics.check_multiprocess()
    if settings.metrics_port:
        metrics.serve_on_port(settings.metrics_port, settings.metrics_host)
        print(
            f"anthra-keys: metrics on http://{settings.metrics_host}:{settings.metrics_port}/metrics",
            flush=True,
        )
    # The app factory runs in uvicorn's workers and reads its settings from the environment.
    os.environ["ANTHRA_HOST"] = host
    os.environ["ANTHRA_PORT"] = str(port)
    os.environ["ANTHRA_SERVER"] = server
    settings = load_settings()
    base = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    print(
        f"anthra-keys: listening on {base} ({backend_for(settings).name} event store, "
        f"{workers} worker{'s' if workers > 1 else ''}, {server})",
        flush=True,
    )
    if settings.dev_mode:
        os.environ["ANTHRA_DEV_SECRET"] = secrets.token_urlsafe(32)
        code = os.environ["ANTHRA_DEV_SIGN_IN_CODE"] = secrets.token_urlsafe(24)
        print(
            "anthra-keys: development mode (no AUTH_SECRET, loopback only). Sign in as "
            f"{settings.dev_user!r}:\n  {base}/account/sign-in/local?code={code}",
            flush=True,
        )
    if server == "granian":
        _run_granian(host, port, workers, settings.log_level, settings.log_json)
    else:
        _run_uvicorn(host, port, workers, settings.log_level, settings.log_json)
    return 0


def _run_uvicorn(host: str, port: int, workers: int, level: str, json: bool) -> None:
    import uvicorn

    from api.server_protocol import head_bound
    from infra.logging import uvicorn_log_config

    uvicorn.run(
        "api.app:create_app",
        factory=True,
        # A bound on a request's head while it arrives, which uvicorn does not have itself.
        http=(
            "api.server_protocol:HeadBoundedHttpTools"
            if importlib.util.find_spec("httptools")
            else "h11"
        ),
        h11_max_incomplete_event_size=head_bound(),
        host=host,
        port=port,
        workers=workers,
        log_config=uvicorn_log_config(level, json),
        # The app writes its own access log (infra/access_log.py), off the event loop.
        access_log=False,
        server_header=False,
        # The app's front door reads X-Forwarded-* from ANTHRA_TRUSTED_PROXIES only; uvicorn's
        # own handling would believe any peer on 127.0.0.1.
        proxy_headers=False,
        forwarded_allow_ips="",
    )


def _run_granian(host: str, port: int, workers: int, level: str, json: bool) -> None:
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings

    from api.server_protocol import head_bound
    from infra.logging import uvicorn_log_config

    Granian(
        "api.app:create_app",
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        factory=True,
        http=HTTPModes.http1,
        websockets=False,
        # Granian's own bound on a request's head while it arrives.
        http1_settings=HTTP1Settings(max_buffer_size=head_bound()),
        # Granian's loggers go through the same redacting handlers; the app writes the access
        # log itself (infra/access_log.py).
        log_dictconfig=uvicorn_log_config(level, json),
        log_access=False,
    ).serve()


def _check_session_tables(url: str) -> None:
    """Stop before serving if the session database answers without Auth.js's tables."""
    import asyncio

    import psycopg

    from infra.authjs_sessions import DatabaseSessions

    async def check() -> None:
        sessions = DatabaseSessions(url)
        try:
            await sessions.check_tables()
        except psycopg.Error:
            pass  # unreachable now: the service starts, and answers session cookies with 503
        finally:
            await sessions.close()

    asyncio.run(check())


def mint(args: argparse.Namespace) -> int:
    ledger = _ledger()
    minted = ledger.mint(
        owner_id=args.owner,
        name=args.name,
        scopes=args.scope,
        expires_in_days=args.expires_in_days,
        actor=_operator(),
    )
    from api.keys import key_view

    _print_json(key_view(minted.record, ledger))
    print("This token is shown once and never again; store it now:", file=sys.stderr)
    sys.stdout.write(minted.token + "\n")
    return 0


def list_keys(args: argparse.Namespace) -> int:
    from api.keys import key_view

    ledger = _ledger()
    _print_json({"keys": [key_view(r, ledger) for r in ledger.keys_of(args.owner)]})
    return 0


def show(args: argparse.Namespace) -> int:
    from api.keys import key_view

    ledger = _ledger()
    _print_json(key_view(ledger.key(args.key_id), ledger))
    return 0


def revoke(args: argparse.Namespace) -> int:
    from api.keys import key_view

    ledger = _ledger()
    _print_json(key_view(ledger.revoke(args.key_id, actor=_operator(), reason=args.reason), ledger))
    return 0


def suspend(args: argparse.Namespace) -> int:
    from api.keys import key_view

    ledger = _ledger()
    record = ledger.suspend(parse_key_id(args.key_id), actor=_operator(), reason=args.reason)
    _print_json(key_view(record, ledger))
    return 0


def resume(args: argparse.Namespace) -> int:
    from api.keys import key_view

    ledger = _ledger()
    _print_json(key_view(ledger.resume(parse_key_id(args.key_id), actor=_operator()), ledger))
    return 0


def policy_show(args: argparse.Namespace) -> int:
    from api.operator import policy_view

    _print_json(policy_view(_ledger()))
    return 0


def policy_set(args: argparse.Namespace) -> int:
    from api.operator import policy_view
    from domain.lifetime_policy import Terms

    ledger = _ledger()
    terms = Terms(args.max_lifetime_days, args.expiry_required, args.revoke_unused_after_days)
    ledger.set_lifetime_policy(terms, _operator())
    _print_json(policy_view(ledger))
    return 0


def stale(args: argparse.Namespace) -> int:
    """A dry run of the stale-key sweep: what it would revoke, and revokes nothing."""
    from api.operator import stale_view
    from infra.backends import backend_for
    from ledger.usage_report import UsageReport
    from projections.usage.counter import UsageCounter

    ledger = _ledger()
    days = args.days or ledger.lifetime_terms().revoke_unused_after_days
    if days is None:
        print(
            "anthra-keys: the lifetime policy revokes no unused keys; give --days to ask anyway",
            file=sys.stderr,
        )
        return 2
    usage = UsageReport(backend_for(load_settings()).usage_store(), UsageCounter(), ledger.clock)
    _print_json(stale_view(ledger, usage, days))
    return 0


def history(args: argparse.Namespace) -> int:
    from api.events import history_event

    ledger = _ledger()
    _print_json(
        {"key_id": args.key_id, "events": [history_event(e) for e in ledger.history(args.key_id)]}
    )
    return 0


def verify(args: argparse.Namespace) -> int:
    token = os.environ.get("ANTHRA_TOKEN") or sys.stdin.readline().strip()
    if not token:
        print("anthra-keys: give the token in ANTHRA_TOKEN or on standard input", file=sys.stderr)
        return 2
    ledger = _ledger()
    verification = ledger.verify(token, args.scope or ())
    record = verification.record
    _print_json(
        {
            "valid": verification.valid,
            "code": verification.code,
            "key_id": str(record.key_id) if record else None,
            "owner_id": record.owner_id if record else None,
        }
    )
    return 0 if verification.valid else 1


class _Parser(argparse.ArgumentParser):
    """argparse echoes unknown arguments; a token pasted by mistake must not be echoed whole."""

    def error(self, message: str) -> NoReturn:
        from infra.logging import redact

        super().error(redact(message))


def _audit() -> AuditTrail:
    from infra.backends import backend_for
    from ledger.audit_trail import AuditTrail
    from ledger.key_ledger import KeyLedger

    backend = backend_for(load_settings())
    ledger = KeyLedger(backend.store_env())
    return AuditTrail(ledger, backend.audit_view(ledger))


def audit_list(args: argparse.Namespace) -> int:
    from api.events import AUDIT_EVENT_TYPES, audit_event
    from api.query_values import parse_instant
    from projections.audit_trail.view import AuditQuery

    query = AuditQuery(
        owner_id=args.owner,
        key_id=parse_key_id(args.key) if args.key else None,
        types=tuple(args.type or ()),
        since=parse_instant(args.since, "since") if args.since else None,
        until=parse_instant(args.until, "until") if args.until else None,
        newest_first=not args.oldest,
        cursor=args.cursor,
        limit=args.limit,
    )
    rows = _audit().query(query)
    _print_json(
        {
            "events": [audit_event(r) for r in rows if r.type in AUDIT_EVENT_TYPES],
            "next": str(rows[-1].position) if len(rows) == args.limit else None,
        }
    )
    return 0


def audit_export(args: argparse.Namespace) -> int:
    from api.audit import EXPORT_BATCH, export_line

    audit = _audit()
    audit.catch_up()
    position, encode = args.after, msgspec.json.Encoder().encode
    while rows := audit.rows_after(position, EXPORT_BATCH, args.owner):
        sys.stdout.write(b"".join(encode(export_line(r)) + b"\n" for r in rows).decode())
        position = rows[-1].position
    sys.stdout.flush()
    return 0


def audit_check(args: argparse.Namespace) -> int:
    report = _audit().check_chain()
    _print_json(report)
    if not report.ok:
        print(
            f"anthra-keys: the audit chain breaks at position {report.first_bad_position}: "
            f"{report.reason}",
            file=sys.stderr,
        )
    return 0 if report.ok else 1


def _page_size(text: str) -> int:
    return _whole_number(text, "limit", 1, MAX_PAGE)


def _position(text: str) -> int:
    return _whole_number(text, "position", 0, MAX_POSITION)


def _whole_number(text: str, field: str, low: int, high: int) -> int:
    from api.query_values import whole_number

    try:
        return whole_number(text, field, low, high)
    except InvalidInput as e:
        raise argparse.ArgumentTypeError(e.message) from None


def scan(args: argparse.Namespace) -> int:
    from api.scan import run

    return run(args.paths)


def parser() -> argparse.ArgumentParser:
    root = _Parser(prog="anthra-keys", description="The Anthra key ledger.")
    commands = root.add_subparsers(dest="command", required=True)

    p = commands.add_parser("serve", help="run the HTTP service")
    p.add_argument("--host", help="address to listen on (ANTHRA_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (ANTHRA_PORT, default 8000)")
    p.add_argument("--workers", type=int, help="worker processes (ANTHRA_WORKERS, default 1)")
    p.add_argument(
        "--server",
        choices=SERVERS,
        help=f"the HTTP server (ANTHRA_SERVER, default {SERVERS[0]})",
    )
    p.set_defaults(run=serve)

    keys = commands.add_parser("keys", help="operate on keys directly in the event store")
    key_commands = keys.add_subparsers(dest="key_command", required=True)

    p = key_commands.add_parser("mint", help="mint a key and print its token once")
    p.add_argument("--owner", required=True, help="the user id that owns the key")
    p.add_argument("--name", required=True, help="what the key is for")
    p.add_argument(
        "--scope",
        action="append",
        required=True,
        choices=list(SCOPES),
        help="a scope to grant; repeat for more",
    )
    p.add_argument("--expires-in-days", type=int, default=None, help="1-3650; omit for none")
    p.set_defaults(run=mint)

    p = key_commands.add_parser("list", help="an owner's keys")
    p.add_argument("--owner", required=True)
    p.set_defaults(run=list_keys)

    for name, run, helptext in (
        ("show", show, "one key"),
        ("history", history, "a key's events, oldest first"),
    ):
        p = key_commands.add_parser(name, help=helptext)
        p.add_argument("key_id")
        p.set_defaults(run=run)

    p = key_commands.add_parser("revoke", help="revoke a key (idempotent)")
    p.add_argument("key_id")
    p.add_argument("--reason", default="", help="why, for the audit history")
    p.set_defaults(run=revoke)

    p = key_commands.add_parser("suspend", help="refuse a key until it is resumed")
    p.add_argument("key_id")
    p.add_argument("--reason", default="", help="why, for the audit history")
    p.set_defaults(run=suspend)
    p = key_commands.add_parser("resume", help="accept a suspended key again")
    p.add_argument("key_id")
    p.set_defaults(run=resume)
    p = key_commands.add_parser(
        "stale", help="dry run: the keys unused for the policy's days (revokes nothing)"
    )
    p.add_argument(
        "--days", type=lambda t: _whole_number(t, "--days", 1, 3650), help="instead of the policy's"
    )
    p.set_defaults(run=stale)

    p = key_commands.add_parser(
        "verify", help="check a token read from ANTHRA_TOKEN or standard input"
    )
    p.add_argument("--scope", action="append", choices=list(SCOPES))
    p.set_defaults(run=verify)

    p = commands.add_parser(
        "scan", help="find live tokens in files (exit 1 if any): a pre-commit hook"
    )
    p.add_argument("paths", nargs="*", help="files or folders (default: the current folder)")
    p.set_defaults(run=scan)

    policy = commands.add_parser("policy", help="the key lifetime policy")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    p = policy_commands.add_parser("show", help="the policy in force and the keys it blocks")
    p.set_defaults(run=policy_show)
    p = policy_commands.add_parser(
        "set", help="set the whole policy (what is not given is lifted), as an event"
    )
    p.add_argument(
        "--max-lifetime-days",
        type=lambda t: _whole_number(t, "--max-lifetime-days", 1, 3650),
        help="the longest a key may live (1-3650); keys minted longer are blocked at use",
    )
    p.add_argument("--expiry-required", action="store_true", help="every key must expire")
    p.add_argument(
        "--revoke-unused-after-days",
        type=lambda t: _whole_number(t, "--revoke-unused-after-days", 1, 3650),
        help="the sweeper revokes keys unused this long (reason: unused)",
    )
    p.set_defaults(run=policy_set)

    audit = commands.add_parser("audit", help="read, export and check the audit trail")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    p = audit_commands.add_parser("list", help="events, newest first, a page at a time")
    p.add_argument("--owner", help="one owner's keys (default: every owner)")
    p.add_argument("--key", help="one key's events")
    p.add_argument("--type", action="append", choices=[*EVENT_TYPES, *WEBHOOK_EVENT_TYPES])
    p.add_argument("--since", help="RFC 3339 instant, inclusive")
    p.add_argument("--until", help="RFC 3339 instant, exclusive")
    p.add_argument("--oldest", action="store_true", help="oldest first")
    p.add_argument("--cursor", type=_position, help="the `next` of the previous page")
    p.add_argument("--limit", type=_page_size, default=100, help=f"1-{MAX_PAGE} events")
    p.set_defaults(run=audit_list)
    p = audit_commands.add_parser("export", help="NDJSON of every event after a position")
    p.add_argument("--after", type=_position, default=0, help="the last position already exported")
    p.add_argument("--owner", help="one owner's keys (default: every owner)")
    p.set_defaults(run=audit_export)
    p = audit_commands.add_parser("check", help="recompute the hash chain from the stored events")
    p.set_defaults(run=audit_check)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (SettingsError, PolicyError, SessionTablesMissing) as e:
        print(f"anthra-keys: configuration: {e}", file=sys.stderr)
        return 2
    except LedgerError as e:
        print(f"anthra-keys: {e}", file=sys.stderr)
        return 1
    except OutcomeUnknown as e:
        print(f"anthra-keys: {e.reason}: read the key before trying again", file=sys.stderr)
        return 1
    except (StoreUnavailable, *CONNECTION_ERRORS) as e:
        reason = unavailable(e).reason
        print(f"anthra-keys: database unavailable: {reason}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
