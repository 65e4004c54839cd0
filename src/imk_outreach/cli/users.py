"""Commands users add|list|remove: the staff who sign in to the web app (``/admin``)."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from rich.table import Table
from rich.text import Text

from imk_outreach.cli.output import local_time, make_console
from imk_outreach.config import Settings
from imk_outreach.services import staff


def cmd_users_add(settings: Settings, args: argparse.Namespace) -> int:
    name = staff.check_name(args.name)  # before asking for a password that cannot be used
    if any(user.name == name for user in staff.list_users(settings)):
        raise staff.UserExistsError(name)
    password = _read_password(args.password_stdin, name)
    if password is None:
        return 1
    user = staff.add_user(settings, name, password, email=args.email, language=args.language)
    details = f"language {user.language or 'of the browser'}" + (
        f", email {user.email}" if user.email else ""
    )
    print(f"added staff user {user.name} ({details})")
    print(f"they sign in at {settings.public_url.rstrip('/')}/admin/login")
    return 0


def _read_password(from_stdin: bool, name: str) -> str | None:
    """The new password: one line of stdin, or asked twice on the terminal (checked after the first
    time, so nobody types a refused one twice). None after saying on stderr why there is none."""
    if from_stdin:
        return sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not sys.stdin.isatty():
        _fail("no terminal to ask for the password on; pipe it in with --password-stdin")
        return None
    try:
        first = getpass.getpass(f"Password for {name}: ")
        staff.check_password(first, name)
        second = getpass.getpass("The same password again: ")
    except EOFError:
        _fail("no password given; nothing was added")
        return None
    if first != second:
        _fail("the passwords do not match; nothing was added")
        return None
    return first


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def cmd_users_list(settings: Settings, args: argparse.Namespace) -> int:
    users = staff.list_users(settings)
    console = make_console()
    if not users:
        console.print("No staff users yet. Add one with 'imk-outreach users add NAME'.", markup=False)
        return 0
    table = Table(title=f"Staff users ({len(users)})", title_justify="left", expand=False)
    for column in ("name", "email", "language", "created"):
        table.add_column(column, no_wrap=True)
    for user in users:
        created = local_time(settings, user.created_at)
        table.add_row(
            Text(user.name), Text(user.email or "-"), Text(user.language or "browser"), Text(created)
        )
    console.print(table)
    return 0


def cmd_users_remove(settings: Settings, args: argparse.Namespace) -> int:
    user = staff.remove_user(settings, args.name)
    print(f"removed staff user {user.name} (signed out everywhere)")
    return 0


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    group = sub.add_parser(
        "users", parents=[common], help="staff who sign in to the web app: add, list, remove"
    )
    commands = group.add_subparsers(dest="users_command", required=True, metavar="ACTION")

    p = commands.add_parser(
        "add", parents=[common], help="add a staff user (asks for the password twice on a terminal)"
    )
    p.add_argument("name", metavar="NAME", help="lower-case letters, digits, '.', '-', '_' (at most 64)")
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin (scripts) instead of asking",
    )
    p.add_argument("--email", metavar="EMAIL", help="their address (for test mails from the web app)")
    p.add_argument(
        "--language",
        choices=staff.LANGUAGES,
        default=None,
        help="language of the web app (default: the browser's)",
    )
    p.set_defaults(func=cmd_users_add)

    p = commands.add_parser("list", parents=[common], help="the staff users")
    p.set_defaults(func=cmd_users_list)

    p = commands.add_parser("remove", parents=[common], help="delete a staff user; their sessions end")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_users_remove)
