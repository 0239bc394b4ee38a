"""``confide export open``: turn an export archive into a readable copy on your own device.

This runs where the person's keys are, never on the server. ``backend.cli`` only
parses the arguments and calls :func:`open_command` from inside the command (a
function-local import), so serving the API never loads secret-key code.

The passphrase comes from a file or an interactive prompt, never from the command line,
where it would be kept in shell history and shown in the process list. The readable
copy is created with mode 0600 and never overwrites an existing file.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, Literal, TextIO

from crypto.client.export import open_export, read_archive, unlock_keys
from crypto.client.export_render import render_json, render_markdown
from crypto.errors import CryptoError, DecryptionError
from crypto.public.wire import decode_key_backup

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "open_command"]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2


def _passphrase(passphrase_file: Path | None, prompt: Callable[[str], str]) -> str:
    if passphrase_file is None:
        return prompt("Key backup passphrase: ")
    text = passphrase_file.read_text(encoding="utf-8")
    return text.removesuffix("\n").removesuffix("\r")


def _write_new(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def open_command(  # noqa: PLR0911 -- one exit code per way the command can end
    archive: Path,
    output: Path,
    *,
    fmt: Literal["json", "markdown"],
    passphrase_file: Path | None,
    key_backups: Sequence[Path],
    server_key: str | None,
    out: TextIO,
    err: TextIO,
    prompt: Callable[[str], str] = getpass.getpass,
) -> int:
    """Verify ``archive``, unlock the keys, open what they can, write ``output``.

    Returns:
        0 when the copy was written; 1 when the archive or the keys were refused (altered
        or truncated archive, wrong passphrase); 2 for a usage or file error.
    """
    try:
        pinned = base64.b64decode(server_key, validate=True) if server_key else None
        backups = [decode_key_backup(path.read_bytes()) for path in key_backups]
        with archive.open("rb") as lines:
            parsed = read_archive(lines, server_key=pinned)
        passphrase = _passphrase(passphrase_file, prompt)
    except (OSError, UnicodeDecodeError):
        print("confide: cannot read the archive, a key backup or the passphrase file", file=err)
        return EXIT_USAGE
    except binascii.Error:
        print("confide: --server-key must be base64", file=err)
        return EXIT_USAGE
    except CryptoError as exc:
        print(f"confide: refused: {exc}", file=err)
        return EXIT_FAILED
    try:
        keys = unlock_keys(parsed, passphrase, backups=backups)
        opened = open_export(parsed, keys)
    except DecryptionError:
        print("confide: wrong passphrase, or a damaged key backup", file=err)
        return EXIT_FAILED
    except CryptoError as exc:
        print(f"confide: cannot use the keys: {exc}", file=err)
        return EXIT_FAILED
    data = render_json(opened) if fmt == "json" else render_markdown(opened).encode("utf-8")
    try:
        _write_new(output, data)
    except OSError:
        print("confide: cannot create the output file (it must not exist yet)", file=err)
        return EXIT_USAGE
    summary = ", ".join(f"{name.replace('_', ' ')} {count}" for name, count in opened.summary.items())
    print(f"wrote {output} ({summary}); it holds clear text: keep it on this device", file=out)
    return EXIT_OK
