#!/usr/bin/env python3
"""Verify a Consentry audit trail export without Consentry.

One file, the Python standard library plus ``cryptography`` (Ed25519 and HMAC), written from
docs/audit-format.md and deliberately sharing no code with Consentry, so that an auditor can
read it in one sitting and trust it instead of the product it checks.

    consentry audit export-log -o trail.jsonl          # on the server
    python standalone_verify.py trail.jsonl --public-key consentry-audit.pub \\
        [--witness witness.jsonl] [--mac-key mac.key]

    # a data subject's access log or receipt (from the customer portal):
    python standalone_verify.py --proofs my-access-proofs.json --public-key consentry-audit.pub

Exit status: 0 the trail (or every proof) is intact, 1 it is not (one line naming the first
bad entry), 2 the input or the keys could not be read.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

EXPORT_FORMAT = "consentry-audit-export/1"
WITNESS_FORMAT = "consentry-audit-witness/1"
HEAD_FORMAT = b"consentry-audit-tree-head/1"
MAC_DOMAIN = b"consentry-audit-entry-mac/1\n"
BASELINE_ACTION = "audit.mac_baseline"
GENESIS = "0" * 64
NOT_HASHED = {"type", "id", "hash", "mac"}
PROOFS_FORMAT = "consentry-inclusion-proofs/1"
RECEIPT_FORMAT = "consentry-receipt/1"
RECEIPT_DOMAIN = b"consentry-receipt/1\n"


class Unreadable(Exception):
    """The export, a key or the witness file is not what the format says."""


# --- the format, byte by byte -----------------------------------------------------------------


def canonical(entry: dict[str, Any]) -> bytes:
    body = {k: entry[k] for k in entry if k not in NOT_HASHED}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def leaf(entry_hash_hex: str) -> bytes:
    return hashlib.sha256(b"\x00" + bytes.fromhex(entry_hash_hex)).digest()


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class Tree:
    """An RFC 6962 tree built left to right: the roots of its perfect subtrees."""

    def __init__(self) -> None:
        self.size = 0
        self.stack: list[tuple[int, bytes]] = []  # (leaves, root), largest first

    def append(self, leaf_hash: bytes) -> None:
        width, digest = 1, leaf_hash
        while self.stack and self.stack[-1][0] == width:
            _, left = self.stack.pop()
            width, digest = 2 * width, node(left, digest)
        self.stack.append((width, digest))
        self.size += 1

    def root(self) -> str:
        if not self.stack:
            return hashlib.sha256(b"").hexdigest()
        digest = self.stack[-1][1]
        for _, left in reversed(self.stack[:-1]):
            digest = node(left, digest)
        return digest.hex()


@dataclass(frozen=True)
class Head:
    tree_size: int
    root_hash: str
    signed_at: str
    key_id: str
    signature: str

    def message(self) -> bytes:
        fields = (str(self.tree_size), self.root_hash, self.signed_at, self.key_id)
        return b"\n".join([HEAD_FORMAT, *(f.encode("ascii") for f in fields)])


def head_of(doc: dict[str, Any]) -> Head:
    try:
        head = Head(
            int(doc["tree_size"]),
            str(doc["root_hash"]),
            str(doc["signed_at"]),
            str(doc["key_id"]),
            str(doc["signature"]),
        )
    except (KeyError, TypeError, ValueError):
        raise Unreadable("a signed head is malformed") from None
    return head


def key_id(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


def signature_problem(head: Head, keys: dict[str, Ed25519PublicKey]) -> str:
    key = keys.get(head.key_id)
    if key is None:
        return f"signed by unknown key {head.key_id}"
    try:
        key.verify(base64.b64decode(head.signature, validate=True), head.message())
    except (InvalidSignature, ValueError):
        return "signature does not verify"
    return ""


def mac_of(mac_key: bytes, entry: dict[str, Any]) -> str:
    return hmac.new(mac_key, MAC_DOMAIN + canonical(entry), hashlib.sha256).hexdigest()


# --- reading ------------------------------------------------------------------------------------


def read_export(path: Path) -> tuple[list[dict[str, Any]], list[Head]]:
    entries: list[dict[str, Any]] = []
    heads: list[Head] = []
    with path.open("rb") as handle:
        lines = [line for line in handle if line.strip()]
    if not lines:
        raise Unreadable(f"{path} is empty")
    try:
        header = json.loads(lines[0])
        docs = [json.loads(line) for line in lines[1:]]
    except ValueError:
        raise Unreadable(f"{path}: a line is not JSON") from None
    if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT:
        raise Unreadable(f"{path} is not a Consentry audit export")
    for doc in docs:
        kind = doc.get("type") if isinstance(doc, dict) else None
        if kind == "entry":
            entries.append(doc)
        elif kind == "head":
            heads.append(head_of(doc))
        else:
            raise Unreadable(f"{path}: a line is neither an entry nor a head")
    return entries, heads


def read_public_key(path: Path) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(path.read_text().strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (OSError, ValueError):
        raise Unreadable(f"{path}: not an Ed25519 public key (base64 of 32 bytes)") from None


def read_mac_key(path: Path) -> bytes:
    try:
        raw = base64.b64decode(path.read_text().strip(), validate=True)
    except (OSError, ValueError):
        raise Unreadable(f"{path}: not a MAC key (base64 of 32 bytes)") from None
    if len(raw) != 32:
        raise Unreadable(f"{path}: not a MAC key (base64 of 32 bytes)")
    return raw


def newest_witnessed(path: Path, keys: dict[str, Ed25519PublicKey]) -> Head | None:
    """The largest head in a witness file whose signature verifies (others are skipped)."""
    newest: Head | None = None
    with path.open("rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
                if doc.get("format") != WITNESS_FORMAT:
                    continue
                head = head_of(doc)
            except (ValueError, AttributeError, Unreadable):
                continue
            if signature_problem(head, keys):
                continue
            if newest is None or head.tree_size > newest.tree_size:
                newest = head
    return newest


# --- verifying ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str = ""


def vouched_baseline(entries: Sequence[dict[str, Any]], mac_key: bytes) -> tuple[int, str] | None:
    """(legacy_upto, legacy_root) of the first genuinely MAC'd ``mac-existing`` entry: the
    entries written before MACs existed that it vouches for, and their Merkle root."""
    for entry in entries:
        if entry.get("action") != BASELINE_ACTION or not entry.get("mac"):
            continue
        if not hmac.compare_digest(mac_of(mac_key, entry), str(entry["mac"])):
            continue
        try:
            detail = json.loads(entry["detail"])
            return int(detail["legacy_upto"]), str(detail["legacy_root"])
        except (KeyError, TypeError, ValueError):
            continue
    return None


def entry_mac_problem(
    entry: dict[str, Any], seq: int, mac_key: bytes, baseline: tuple[int, str] | None
) -> str:
    """Why an entry's MAC does not vouch for it ("" when it does, or when it is older than
    MACs and a vouched baseline covers it)."""
    mac = str(entry.get("mac") or "")
    if mac:
        if not hmac.compare_digest(mac_of(mac_key, entry), mac):
            return f"entry {seq}: its MAC does not verify: not written by this server"
    elif baseline is None or seq > baseline[0]:
        return f"entry {seq} carries no MAC: not written by this server"
    return ""


def verify(
    entries: Sequence[dict[str, Any]],
    heads: Sequence[Head],
    keys: Iterable[Ed25519PublicKey],
    *,
    mac_key: bytes | None = None,
    witnessed: Sequence[Head] = (),
) -> Verdict:
    trusted = {key_id(k): k for k in keys}
    for head in [*heads, *witnessed]:
        problem = signature_problem(head, trusted)
        if problem:
            return Verdict(False, 0, None, f"head over {head.tree_size} events: {problem}")

    baseline = None if mac_key is None else vouched_baseline(entries, mac_key)
    checkpoints = sorted(
        [(h.tree_size, 0, h, "signed head") for h in heads]
        + [(h.tree_size, 1, h, "a witnessed head") for h in witnessed],
        key=lambda item: (item[0], item[1]),
    )
    position = 0
    tree = Tree()
    last_hash, before_last = GENESIS, ""
    previous_size = 0
    checked = 0

    def bad(seq: int | None, problem: str) -> Verdict:
        return Verdict(False, checked, seq, problem)

    for entry in entries:
        seq = int(entry["seq"])
        expected = tree.size + 1
        if seq != expected:
            what = "missing (deleted)" if seq > expected else "out of order"
            return bad(expected, f"entry {expected} is {what}")
        if entry["prev_hash"] != last_hash:
            if seq > 1 and entry["prev_hash"] == before_last:
                return bad(
                    seq - 1, f"entry {seq - 1} was inserted (entry {seq} links to entry {seq - 2})"
                )
            return bad(seq, f"entry {seq} does not link to entry {seq - 1}")
        if hashlib.sha256(canonical(entry)).hexdigest() != entry["hash"]:
            return bad(seq, f"entry {seq}: contents do not match its hash")
        mac_problem = "" if mac_key is None else entry_mac_problem(entry, seq, mac_key, baseline)
        if mac_problem:
            return bad(seq, mac_problem)
        tree.append(leaf(str(entry["hash"])))
        before_last, last_hash = last_hash, str(entry["hash"])
        checked += 1
        at_legacy_end = mac_key is not None and baseline is not None and baseline[0] == seq
        if at_legacy_end and baseline is not None and tree.root() != baseline[1]:
            return bad(
                1,
                f"entries 1-{seq} do not match what `consentry audit mac-existing` "
                "vouched for: changed since",
            )
        while position < len(checkpoints) and checkpoints[position][0] == tree.size:
            head, label = checkpoints[position][2], checkpoints[position][3]
            if tree.root() != head.root_hash:
                return bad(
                    previous_size + 1,
                    f"entries {previous_size + 1}-{head.tree_size} do not match {label} "
                    f"signed at {head.signed_at}: history was rewritten in that range",
                )
            previous_size = head.tree_size
            position += 1
    if position < len(checkpoints):
        size, _, _, label = max(checkpoints, key=lambda item: item[0])
        held = tree.size
        return bad(
            held + 1,
            f"the log ends at entry {held} but {label} covers {size} "
            f"entries: entries {held + 1}-{size} were deleted (truncated)",
        )
    return Verdict(True, checked)


# --- inclusion proofs (a data subject's access log, receipts) ---------------------------------


def root_from_inclusion(index: int, size: int, leaf_hash: bytes, path: Sequence[bytes]) -> bytes:
    """RFC 9162 section 2.1.3.2: the root that ``path`` proves ``leaf_hash`` at ``index``
    is under, in a tree of ``size`` leaves."""
    if not 0 <= index < size:
        raise Unreadable("a leaf index outside its tree")
    fn, sn, r = index, size - 1, leaf_hash
    for p in path:
        if sn == 0:
            raise Unreadable("an inclusion proof longer than its tree")
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise Unreadable("an inclusion proof shorter than its tree")
    return r


def receipt_message(doc: dict[str, Any]) -> bytes:
    """The signed bytes of a receipt: its domain, then the document without its
    signature as sorted, compact JSON (ASCII)."""
    body = {k: v for k, v in doc.items() if k != "signature"}
    return RECEIPT_DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def verify_proofs(doc: dict[str, Any], keys: Iterable[Ed25519PublicKey]) -> Verdict:
    """A proofs file or a receipt: the receipt's signature, the head's signature, and every
    event's inclusion proof under that head."""
    trusted = {key_id(k): k for k in keys}
    if doc.get("format") == RECEIPT_FORMAT:
        try:
            signer = trusted[str(doc["key_id"])]
            signer.verify(base64.b64decode(str(doc["signature"])), receipt_message(doc))
        except KeyError:
            return Verdict(False, 0, None, "the receipt is not signed by a key you trust")
        except (InvalidSignature, ValueError):
            return Verdict(False, 0, None, "the receipt's signature does not verify")
        doc = doc.get("proofs") or {}
    if doc.get("format") != PROOFS_FORMAT:
        return Verdict(False, 0, None, "not a Consentry proofs file or receipt")
    try:
        head = head_of(doc["head"])
    except (KeyError, TypeError, Unreadable):
        return Verdict(False, 0, None, "no signed tree head in the file")
    problem = signature_problem(head, trusted)
    if problem:
        return Verdict(False, 0, None, f"head over {head.tree_size} events: {problem}")
    checked = 0
    for proof in doc.get("proofs") or []:
        try:
            seq = int(proof["seq"])
        except (KeyError, TypeError, ValueError):
            return Verdict(False, checked, None, "an event without a sequence number")
        try:
            path = [bytes.fromhex(p) for p in proof["inclusion_proof"]]
            if int(proof["leaf_index"]) != seq - 1:
                raise Unreadable("leaf index and sequence number disagree")
            root = root_from_inclusion(seq - 1, head.tree_size, leaf(str(proof["hash"])), path)
        except (KeyError, TypeError, ValueError, Unreadable) as exc:
            return Verdict(False, checked, seq, f"event {seq}: the proof is malformed ({exc})")
        if root.hex() != head.root_hash:
            return Verdict(False, checked, seq, f"event {seq}: not in the signed log")
        checked += 1
    return Verdict(True, checked)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", type=Path, nargs="?", help="from `consentry audit export-log`")
    parser.add_argument(
        "--proofs", type=Path, help="an access-log proofs file or a receipt from the portal"
    )
    parser.add_argument(
        "--public-key", type=Path, action="append", required=True, help="repeatable"
    )
    parser.add_argument("--mac-key", type=Path, help="from `consentry audit mac-key`")
    parser.add_argument("--witness", type=Path, help="a witness file (JSON lines of heads)")
    args = parser.parse_args(argv)
    if args.proofs:
        return _main_proofs(args.proofs, args.public_key)
    if args.export is None:
        parser.error("give an export file, or --proofs FILE")
    try:
        keys = [read_public_key(p) for p in args.public_key]
        entries, heads = read_export(args.export)
        mac_key = read_mac_key(args.mac_key) if args.mac_key else None
        witnessed: list[Head] = []
        if args.witness:
            newest = newest_witnessed(args.witness, {key_id(k): k for k in keys})
            witnessed = [newest] if newest else []
    except (OSError, Unreadable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    verdict = verify(entries, heads, keys, mac_key=mac_key, witnessed=witnessed)
    if not verdict.ok:
        where = f"first bad entry: {verdict.first_bad_seq}: " if verdict.first_bad_seq else ""
        print(
            f"NOT intact: {where}{verdict.problem} ({verdict.checked} entries verified before it)"
        )
        return 1
    print(
        f"intact: {verdict.checked} entries, {len(heads)} signed heads"
        + (f", witnessed head over {witnessed[0].tree_size}" if witnessed else "")
        + ("" if mac_key else " (entry MACs not checked: no --mac-key)")
    )
    return 0


def _main_proofs(path: Path, key_paths: Sequence[Path]) -> int:
    try:
        keys = [read_public_key(p) for p in key_paths]
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict):
            raise Unreadable(f"{path}: not a JSON object")
    except (OSError, ValueError, Unreadable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    verdict = verify_proofs(doc, keys)
    if not verdict.ok:
        where = f"first bad event: {verdict.first_bad_seq}: " if verdict.first_bad_seq else ""
        print(f"NOT verified: {where}{verdict.problem}")
        return 1
    is_receipt = doc.get("format") == RECEIPT_FORMAT
    size = (doc["proofs"] if is_receipt else doc)["head"]["tree_size"]
    kind = "receipt (signature verified), " if is_receipt else ""
    print(f"verified: {kind}{verdict.checked} events in the signed log of {size} events")
    return 0


if __name__ == "__main__":
    sys.exit(main())
