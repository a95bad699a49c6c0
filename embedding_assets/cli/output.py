"""What a command prints: lines for people, or with ``--json`` one JSON object for scripts.

Every JSON object has ``schema`` (its version, raised only when a field changes meaning or goes),
``command`` and ``exit_code``; failures add ``error``. The fields of each command are in the README.
"""

import argparse
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

SCHEMA = 1
EXIT_OK = 0  # nothing is wrong
EXIT_DIFFERENCE = 1  # a difference (verify), a refusal (promote, the run budget), or a failed run
EXIT_CONFIG = 2  # misconfiguration: a setting, a missing table or version, an unusable source


def wants_json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def emit(args: argparse.Namespace, code: int, payload: dict[str, Any], lines: Iterable[str] = ()) -> int:
    """Print ``payload`` as JSON (with ``--json``) or ``lines``; returns ``code``, the exit code."""
    if wants_json(args):
        envelope = {"schema": SCHEMA, "command": args.command, "exit_code": code}
        print(json.dumps(envelope | payload, default=_plain, ensure_ascii=False))
    else:
        for line in lines:
            print(line)
    return code


def _plain(value: object) -> object:
    """JSON for what ``json`` does not know: moments as ISO 8601 (UTC), sets as sorted lists."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
