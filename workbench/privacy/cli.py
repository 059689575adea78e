"""``workbench forget SUBJECT --keys URL``: erase data subjects from a key store.

The master key comes from ``--master-key-file``, ``$WORKBENCH_MASTER_KEY`` or
``$WORKBENCH_MASTER_KEY_FILE`` (it is needed to compute a subject's handle).
``workbench forget --new-master-key FILE`` writes a new random master key (mode 0600).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_cli"]

HELP = """Erase data subjects: delete each one's data key from the key store and leave a
tombstone, so their personal fields read as <erased> in every topic, changelog, git commit and
table (running jobs: within the key store's cache lifetime, 30 s by default). Exit status 0
when every subject is forgotten (also when one was forgotten before or never had a key)."""


def add_cli(sub: Any) -> None:
    """Register ``forget`` on the ``workbench`` command's subparsers."""
    cmd = sub.add_parser("forget", help="erase data subjects (crypto-shredding)",
                         description=HELP)
    cmd.add_argument("subjects", nargs="*", metavar="SUBJECT",
                     help="subject ids (the values of the Personal(subject=...) field)")
    cmd.add_argument("--keys", metavar="URL",
                     help="the key store: postgresql://... (?schema=), file:///DIR or a "
                          "directory")
    cmd.add_argument("--master-key-file", metavar="FILE",
                     help="the master key (default: $WORKBENCH_MASTER_KEY or "
                          "$WORKBENCH_MASTER_KEY_FILE)")
    cmd.add_argument("--from-file", metavar="FILE",
                     help="also forget the subject ids in FILE, one a line ('-': stdin)")
    cmd.add_argument("--vacuum", action="store_true",
                     help="PostgreSQL key store: VACUUM FULL the key table afterwards, so the "
                          "deleted keys' bytes leave its data file")
    cmd.add_argument("--new-master-key", metavar="FILE",
                     help="write a new random master key to FILE (mode 0600) and exit")
    cmd.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """The ``forget`` command."""
    from ..errors import DefinitionError
    from .keystore import KeyStore
    from .master import LocalMasterKey

    if args.new_master_key:
        key = LocalMasterKey.generate(args.new_master_key)
        print(f"wrote master key {key.fingerprint} to {args.new_master_key}")
        return 0
    if not args.keys:
        raise DefinitionError("workbench forget: --keys URL is required (the key store).")
    subjects = list(args.subjects)
    if args.from_file:
        if args.from_file == "-":
            text = sys.stdin.read()
        else:
            with open(args.from_file, encoding="utf-8") as fh:
                text = fh.read()
        subjects += [line.strip() for line in text.splitlines() if line.strip()]
    if not subjects:
        raise DefinitionError("workbench forget: name at least one SUBJECT.")
    store = KeyStore(args.keys, master=args.master_key_file)
    try:
        for s in subjects:
            existed = store.forget(s)
            print(f"forgot {s!r}" + ("" if existed else " (it had no key)"))
        if args.vacuum:
            vacuum = getattr(store.backend, "vacuum_full", None)
            if vacuum is not None:
                kept = vacuum()
                if kept:
                    print("warning: " + (
                        f"{kept} deleted key row(s) are still in the key table's data file: "
                        "a transaction of the database older than the forget is still open; "
                        "run --vacuum again when it has ended" if kept > 0 else
                        "the server's VACUUM report could not be read: check that the "
                        "deleted keys left the table (docs/privacy.md, erasure procedure)"),
                        file=sys.stderr)
        keys, gone = store.counts()
        print(f"key store {store.url}: {keys} subjects with a key, {gone} forgotten")
    finally:
        store.close()
    return 0
