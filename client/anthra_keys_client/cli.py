"""anthra-token: a token's holder asks the ledger who it is, reads its keys and rotates itself;
a service asks whether a token is valid.

The token is read from ANTHRA_TOKEN (and the token to verify from standard input, the verify
secret from ANTHRA_VERIFY_SECRET), never from the command line, where shell history and `ps`
would keep it. Exit status: 0 done, 1 refused, 2 usage or configuration, 3 unavailable.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, NoReturn
from urllib.parse import urlsplit

import msgspec

from anthra_keys_client.client import TOKEN_VARIABLE, Client
from anthra_keys_client.errors import AnthraError, BadRequest, MissingCredential, Unavailable
from anthra_keys_client.redaction import redact
from anthra_keys_client.schemas import Key, RotatedKey, Verification, WhoAmI

PROG = "anthra-token"
URL_VARIABLE = "ANTHRA_URL"
DEFAULT_URL = "http://127.0.0.1:8000"
VERIFY_SECRET_VARIABLE = "ANTHRA_VERIFY_SECRET"  # noqa: S105 - the variable's name

OK, REFUSED, USAGE, UNAVAILABLE = 0, 1, 2, 3


class UsageError(Exception):
    """The command line or the environment is wrong: exit 2, saying what."""


class Output:
    """Where answers go: short text for people, or one JSON document for programs."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def show(self, value: Any, text: Callable[[], str]) -> None:
        if self.as_json:
            sys.stdout.write(msgspec.json.encode(value).decode() + "\n")
        else:
            sys.stdout.write(text() + "\n")

    def refusal(self, error: AnthraError) -> None:
        if self.as_json:
            sys.stderr.write(msgspec.json.encode(error.as_dict()).decode() + "\n")
        else:
            sys.stderr.write(f"{PROG}: {error}\n")


def _when(instant: datetime | None, none: str = "never") -> str:
    return instant.isoformat().replace("+00:00", "Z") if instant else none


def _whoami_text(me: WhoAmI) -> str:
    key = f", key {me.key_id}" if me.key_id else ""
    return f"{me.user_id} via {me.via}{key}\nscopes: {' '.join(me.scopes) or '(none)'}"


def _key_line(key: Key) -> str:
    return (
        f"{key.id}  {key.prefix}…  {key.status:<9} expires {_when(key.expires_at):<20}  "
        f"{','.join(key.scopes)}  {key.name}"
    )


def _key_text(key: Key) -> str:
    rows = [
        ("id", key.id),
        ("name", key.name),
        ("prefix", f"{key.prefix}…"),
        ("status", key.status),
        ("scopes", " ".join(key.scopes)),
        ("created", _when(key.created_at)),
        ("expires", _when(key.expires_at)),
        ("revoked", _when(key.revoked_at, "-")),
        ("last used", _when(key.last_used_at)),
    ]
    return "\n".join(f"{name:<10} {value}" for name, value in rows)


def _verification_text(answer: Verification) -> str:
    lines = [answer.code]
    if answer.missing_scopes:
        lines[0] += f" (missing {' '.join(answer.missing_scopes)})"
    if answer.key_id:
        lines.append(f"key {answer.key_id} of {answer.owner_id}")
    if answer.scopes is not None:
        lines.append(f"scopes: {' '.join(answer.scopes)}; expires {_when(answer.expires_at)}")
    return "\n".join(lines)


def _rotated_text(key: RotatedKey) -> str:
    stops = _when(key.predecessor_retires_at, "now")
    return (
        f"rotated {key.predecessor_id} → {key.id} ({key.name}; {' '.join(key.scopes)}; "
        f"expires {_when(key.expires_at)}); the old token stops at {stops}"
    )


def whoami(client: Client, args: argparse.Namespace, out: Output) -> int:
    me = client.whoami()
    out.show(me, lambda: _whoami_text(me))
    return OK


def list_keys(client: Client, args: argparse.Namespace, out: Output) -> int:
    keys = client.keys()
    out.show({"keys": keys}, lambda: "\n".join(_key_line(k) for k in keys) or "no keys")
    return OK


def show_key(client: Client, args: argparse.Namespace, out: Output) -> int:
    key = client.key(args.key_id)
    out.show(key, lambda: _key_text(key))
    return OK


def rotate(client: Client, args: argparse.Namespace, out: Output) -> int:
    rotated = client.rotate(
        args.key_id, grace_seconds=args.grace_seconds, expires_in_days=args.expires_in_days
    )
    described = {k: v for k, v in msgspec.structs.asdict(rotated).items() if k != "token"}
    out.show(described, lambda: _rotated_text(rotated))
    sys.stdout.flush()
    sys.stderr.write(
        f"This token is shown once and never again; store it now (e.g. as {TOKEN_VARIABLE}):\n"
    )
    sys.stderr.flush()
    sys.stdout.write(rotated.token + "\n")
    return OK


def verify(client: Client, args: argparse.Namespace, out: Output) -> int:
    token = _token_to_verify()
    as_of = _instant(args.as_of) if args.as_of else None
    secret = os.environ.get(VERIFY_SECRET_VARIABLE) or None
    answer = client.verify(token, args.scope, verify_secret=secret, as_of=as_of)
    out.show(answer, lambda: _verification_text(answer))
    return OK if answer.valid else REFUSED


def _token_to_verify() -> str:
    # On a terminal, without echoing it; else the first line of what is piped in.
    typed = sys.stdin.isatty()
    token = (getpass.getpass("token to verify: ") if typed else sys.stdin.readline()).strip()
    if not token:
        raise UsageError("give the token to verify on standard input")
    return token


def _instant(text: str) -> datetime:
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--as-of: not an RFC 3339 instant: {redact(text)!r}") from None
    if instant.tzinfo is None:
        raise UsageError("--as-of: give the offset, e.g. 2026-11-28T12:00:00Z")
    return instant


class _Parser(argparse.ArgumentParser):
    """argparse echoes what it could not read; a token pasted by mistake must not be echoed."""

    def error(self, message: str) -> NoReturn:
        super().error(redact(message))


def _whole_number(low: int, high: int) -> Callable[[str], int]:
    def read(text: str) -> int:
        if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"a whole number from {low} to {high}")
        return int(text)

    return read


def parser() -> argparse.ArgumentParser:
    # Accepted before or after the command; SUPPRESS keeps a subcommand from resetting them.
    common = _Parser(add_help=False)
    common.add_argument(
        "--url",
        default=argparse.SUPPRESS,
        help=f"the ledger (default: ${URL_VARIABLE} or {DEFAULT_URL})",
    )
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    common.add_argument(
        "--retries",
        type=_whole_number(0, 20),
        default=argparse.SUPPRESS,
        help="tries after the first when the ledger is unavailable (default 4)",
    )
    root = _Parser(
        prog=PROG,
        parents=[common],
        description=f"Act with the token in ${TOKEN_VARIABLE}: who it is, its keys, rotating it.",
    )
    commands = root.add_subparsers(dest="command", required=True)
    p = commands.add_parser("whoami", parents=[common], help="the token's user, key and scopes")
    p.set_defaults(run=whoami)

    keys = commands.add_parser(
        "keys", parents=[common], help="the keys of the token's owner"
    ).add_subparsers(dest="keys_command", required=True)
    p = keys.add_parser("list", parents=[common], help="every key (needs account:read)")
    p.set_defaults(run=list_keys)
    p = keys.add_parser("show", parents=[common], help="one key (needs account:read)")
    p.add_argument("key_id", metavar="ID")
    p.set_defaults(run=show_key)
    p = keys.add_parser(
        "rotate",
        parents=[common],
        help="a new key takes over; its token is printed once, on the last line",
    )
    p.add_argument("key_id", metavar="ID", nargs="?", help="default: the token's own key")
    p.add_argument(
        "--grace-seconds",
        type=_whole_number(0, 86400),
        default=0,
        help="how long the old token keeps working (default 0)",
    )
    p.add_argument(
        "--expires-in-days",
        type=_whole_number(1, 3650),
        default=None,
        help="the new key's lifetime (default: the ledger's rule)",
    )
    p.set_defaults(run=rotate)

    p = commands.add_parser(
        "verify",
        parents=[common],
        help=f"is the token on standard input valid? (with ${VERIFY_SECRET_VARIABLE}: whose)",
    )
    p.add_argument("--scope", action="append", default=[], help="a scope it must hold")
    p.add_argument("--as-of", help="at this past instant (RFC 3339)")
    p.set_defaults(run=verify)
    return root


def _base_url(args: argparse.Namespace) -> str:
    url = str(getattr(args, "url", None) or os.environ.get(URL_VARIABLE) or DEFAULT_URL)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--url: not an http(s) URL: {redact(url)!r}")
    return url


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out = Output(as_json=getattr(args, "json", False))
    try:
        with Client(_base_url(args), retries=getattr(args, "retries", 4)) as client:
            return int(args.run(client, args, out))
    except UsageError as e:
        sys.stderr.write(f"{PROG}: {e}\n")
        return USAGE
    except (MissingCredential, BadRequest) as e:
        out.refusal(e)
        return USAGE
    except Unavailable as e:
        out.refusal(e)
        return UNAVAILABLE
    except AnthraError as e:
        out.refusal(e)
        return REFUSED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
