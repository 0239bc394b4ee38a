"""``confide audit witness``: an independent witness run by a compliance officer.

Each round: fetch the newest checkpoint, verify the log's signature with the trusted
log key, compare with the last checkpoint this witness accepted (kept in a state
file), and accept it only if it extends that one — a smaller tree is a rollback,
the same size with another root or a failing consistency proof is a fork; both are
refused and the state is kept. An accepted checkpoint is cosigned with the witness's
own Ed25519 key (C2SP tlog-cosignature, type 0x04), saved as the new state, and sent
back to the server (``POST /v1/audit/cosignatures``).

Speaks HTTP with the standard library only; the compliance officer's session token
is read from a file.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from audit.checkpoint import Checkpoint, verify_checkpoint
from audit.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Writer
from audit.cosignature import witness_checkpoint
from audit.errors import ProofError, VerificationError
from audit.note import COSIGNATURE_V1, NoteSigner, VerifierKey

__all__ = ["HttpClient", "WitnessError", "witness_once"]

_TIMEOUT_S: Final = 30.0


class WitnessError(Exception):
    """The server could not be asked (network, HTTP status, malformed answer)."""


class HttpClient:
    """Minimal JSON-over-HTTP client with a bearer token (standard library only)."""

    def __init__(self, base_url: str, token: str) -> None:
        scheme = urllib.parse.urlsplit(base_url).scheme
        if scheme not in {"http", "https"}:
            raise WitnessError("the server URL must be http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.token = token

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Send one request; return the decoded JSON answer.

        Raises:
            WitnessError: Transport failure or a non-2xx answer.
        """
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 -- the scheme is checked in __init__
            self.base_url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:  # noqa: S310 -- checked scheme
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise WitnessError(f"the server answered {exc.code} to {method} {path.split('?', 1)[0]}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise WitnessError(f"cannot reach the server: {type(exc).__name__}") from exc


def _load_state(path: Path) -> str | None:
    if not path.exists():
        return None
    state = json.loads(path.read_text(encoding="utf-8"))
    note = state.get("checkpoint")
    return note if isinstance(note, str) else None


def _save_state(path: Path, note: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"checkpoint": note}), encoding="utf-8")
    tmp.replace(path)


def witness_once(
    http: HttpClient,
    *,
    log_key: VerifierKey,
    witness: NoteSigner,
    state_path: Path,
    out: Writer,
    clock: Callable[[], float] = time.time,
) -> int:
    """One witness round; returns an exit code (0 accepted or unchanged, 1 refused, 2 error)."""
    if witness.sig_type != COSIGNATURE_V1:
        out.write("error: the witness key must cosign (type 0x04)\n")
        return EXIT_USAGE
    try:
        previous_note = _load_state(state_path)
        previous: Checkpoint | None = None
        if previous_note is not None:
            previous = verify_checkpoint(previous_note, [log_key]).checkpoint
        latest = http.request("GET", "/v1/audit/checkpoint")
        note = str(latest["note"])
        new = verify_checkpoint(note, [log_key]).checkpoint
        proof: list[bytes] = []
        if previous is not None:
            if new.size < previous.size:
                raise ProofError(
                    "the log's newest checkpoint is smaller than one already accepted (rollback)"
                )
            if new.size == previous.size:
                if new.root != previous.root:
                    raise ProofError("two checkpoints of the same size with different roots (fork)")
                out.write(f"unchanged: {new.origin} size {new.size}\n")
                return EXIT_OK
            answer = http.request("GET", f"/v1/audit/proofs/consistency?old={previous.size}&new={new.size}")
            proof = [base64.b64decode(value, validate=True) for value in answer["proof"]]
        accepted, cosigned = witness_checkpoint(
            note, [log_key], witness, timestamp=int(clock()), previous=previous, proof=proof
        )
    except VerificationError as exc:
        out.write(f"REFUSED: {exc}\n")
        return EXIT_FAILED
    except (WitnessError, OSError, KeyError, TypeError, ValueError) as exc:
        out.write(f"error: {exc}\n")
        return EXIT_USAGE
    _save_state(state_path, note)
    try:
        http.request(
            "POST", "/v1/audit/cosignatures", {"note": cosigned, "witness_key": str(witness.verifier())}
        )
    except WitnessError as exc:
        out.write(
            f"accepted {accepted.origin} size {accepted.size}, but the cosignature was not stored: {exc}\n"
        )
        return EXIT_USAGE
    out.write(f"cosigned: {accepted.origin} size {accepted.size}\n")
    return EXIT_OK
