"""The broker's signing keys on disk, through a rotation: which key signs, which is announced, which retires.

Files in the keys folder (each a base64 Ed25519 seed, mode 0600, written atomically):

- `broker-signing.key`: the ACTIVE key, which signs envelopes, receipts and webhooks;
- `broker-signing.next.key`: a NEW key, made by `keys rotate-signing`, announced but not yet signing;
- `broker-signing.previous.key`: the OLD key after `keys activate-signing`, until `keys retire-signing`.

Every step replaces or links one file at a time, and every state between two steps reads as one of the
states above (a `next` equal to the active key is an activation that only lacks its clean-up; a
`previous` equal to the active key one that has not switched yet), so a step killed half-way is finished
by running it again, and nothing is half-done.

Running processes (`serve`, `worker`) hold a `SigningKeyring`, which looks at the files' stat before
each use and re-reads them when they changed: an activation takes effect in every process without a
restart, and a process never signs with a key that has left the folder.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from referral_protocol.encoding import PUBLISHED_TEST_KEY, b64, format_public_key, is_published_test_key, unb64
from referral_protocol.envelope import BrokerSigner
from referral_protocol.keyfile import write_private

SIGNING_FILE = "broker-signing.key"
NEXT_FILE = "broker-signing.next.key"
PREVIOUS_FILE = "broker-signing.previous.key"
PUBLIC_FILE = "broker.pub"

log = logging.getLogger(__name__)


class SigningKeyProblem(Exception):
    """A signing key file is missing, damaged or must not be used, or a step is out of order; the message
    says which and what to do."""


@dataclass(frozen=True)
class SigningState:
    active: BrokerSigner
    next: BrokerSigner | None = None  # made and announced, not yet signing
    previous: BrokerSigner | None = None  # signed before the activation; clinics still accept it

    @property
    def phase(self) -> str:
        if self.next is not None:
            return "announced"
        if self.previous is not None:
            return "overlap"
        return "steady"


def _read_seed(path: Path) -> BrokerSigner:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SigningKeyProblem(f"{path} is missing; run `referral-broker keys init` first") from None
    except OSError as exc:
        raise SigningKeyProblem(f"cannot read {path}: {exc.strerror}") from None
    try:
        seed = unb64(text)
    except ValueError:
        raise SigningKeyProblem(f"{path} is not a base64 Ed25519 seed") from None
    if len(seed) != 32:
        raise SigningKeyProblem(f"{path} does not hold a 32-byte Ed25519 seed")
    signer = BrokerSigner(seed)
    if is_published_test_key(signer.public_key):
        raise SigningKeyProblem(f"{path} holds {PUBLISHED_TEST_KEY}; make a new one")
    return signer


def read_state(folder: Path) -> SigningState:
    """The signing keys in `folder`, with a step killed half-way read as the state it was leaving or reaching."""
    active = _read_seed(folder / SIGNING_FILE)
    following = _read_seed(folder / NEXT_FILE) if (folder / NEXT_FILE).exists() else None
    previous = _read_seed(folder / PREVIOUS_FILE) if (folder / PREVIOUS_FILE).exists() else None
    if following is not None and following.key_id == active.key_id:
        following = None  # activated; only the clean-up of the next file is missing
    if previous is not None and previous.key_id == active.key_id:
        previous = None  # an activation that had copied the old key but not yet switched
    if following is not None and previous is not None:
        raise SigningKeyProblem(
            f"{folder} holds a next and a previous signing key beside the active one: a rotation was started "
            "before the last one was retired; retire it with `referral-broker keys retire-signing`"
        )
    return SigningState(active, following, previous)


class SigningKeyring:
    """The signing keys of a running process, re-read when the files change (one stat per file per use)."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._state = read_state(folder)

    def _stat(self) -> tuple[tuple[int, int, int] | None, ...]:
        stamps: list[tuple[int, int, int] | None] = []
        for name in (SIGNING_FILE, NEXT_FILE, PREVIOUS_FILE):
            try:
                st = os.stat(self._folder / name)
            except FileNotFoundError:
                stamps.append(None)
            else:
                stamps.append((st.st_mtime_ns, st.st_ino, st.st_size))
        return tuple(stamps)

    def state(self) -> SigningState:
        stamp = self._stat()
        if stamp == self._stamp:
            return self._state
        with self._lock:
            try:
                state = read_state(self._folder)
            except SigningKeyProblem as exc:
                # Keep signing with the key read last rather than stop; the operator sees why.
                log.error("signing keys not re-read, the last ones read stay in use: %s", exc)
                return self._state
            if state.active.key_id != self._state.active.key_id:
                log.info("broker signing key is now %s (was %s)", state.active.key_id, self._state.active.key_id)
            self._state, self._stamp = state, stamp
            return state

    @property
    def active(self) -> BrokerSigner:
        return self.state().active


def _write_public(folder: Path, signer: BrokerSigner) -> None:
    write_private(folder / PUBLIC_FILE, (format_public_key(signer.public_key) + "\n").encode(), overwrite=True)
    os.chmod(folder / PUBLIC_FILE, 0o644)


def make_next(folder: Path) -> tuple[SigningState, BrokerSigner]:
    """Make the new key (`broker-signing.next.key`), unless a rotation is already under way: then the
    message says which step comes next. Returns the state before and the new key. An existing next key
    (a rotation whose announcement did not finish) is returned as it is, so the announcement can resume."""
    state = read_state(folder)
    if state.previous is not None:
        raise SigningKeyProblem(
            f"the previous signing key {state.previous.key_id} is still in its overlap; finish that rotation "
            "with `referral-broker keys retire-signing` before starting another"
        )
    if state.next is not None:
        return state, state.next
    signer = BrokerSigner.generate()
    write_private(folder / NEXT_FILE, b64(signer.seed).encode() + b"\n")  # refuses to replace a file
    return state, signer


def switch_to_next(folder: Path) -> tuple[BrokerSigner, BrokerSigner]:
    """Make the next key the active one, keeping the old as `previous`. Returns (old, new)."""
    state = read_state(folder)
    if state.next is None:
        if state.previous is not None:
            raise SigningKeyProblem(
                f"signing key {state.active.key_id} is already active (the previous key {state.previous.key_id} "
                "is in its overlap); nothing to activate"
            )
        raise SigningKeyProblem("there is no new signing key to activate: run `referral-broker keys rotate-signing`")
    old, new = state.active, state.next
    write_private(folder / PREVIOUS_FILE, b64(old.seed).encode() + b"\n", overwrite=True)
    write_private(folder / SIGNING_FILE, b64(new.seed).encode() + b"\n", overwrite=True)
    _write_public(folder, new)
    (folder / NEXT_FILE).unlink(missing_ok=True)
    return old, new


def drop_previous(folder: Path, expected_key_id: str) -> None:
    """Remove the old key from the folder (the end of `retire-signing`); only the key named."""
    path = folder / PREVIOUS_FILE
    if not path.exists():
        return
    if _read_seed(path).key_id != expected_key_id:
        raise SigningKeyProblem(f"{path} no longer holds key {expected_key_id}; nothing was removed")
    path.unlink()
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
