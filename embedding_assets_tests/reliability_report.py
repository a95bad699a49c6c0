"""Summarize what the reliability suites recorded (``make reliability``); exit 1 if anything was lost."""

import json
import sys
from collections import Counter
from pathlib import Path


def main(path: str) -> int:
    entries = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    if not entries:
        print(f"no reliability figures in {path}")
        return 1
    totals: Counter = Counter()
    faults: Counter = Counter()
    print(f"{'suite':<48}{'trials':>7}{'faults':>8}{'rows checked':>14}{'lost':>6}{'dupes':>7}")
    for entry in entries:
        injected = sum(entry["faults"].values())
        print(
            f"{entry['suite']:<48}{entry['trials']:>7}{injected:>8}{entry['rows_checked']:>14}"
            f"{entry['rows_lost']:>6}{entry['duplicates']:>7}"
        )
        totals.update({k: entry[k] for k in ("trials", "rows_checked", "rows_lost", "duplicates")})
        faults.update(entry["faults"])
    print(
        f"{'total':<48}{totals['trials']:>7}{faults.total():>8}{totals['rows_checked']:>14}"
        f"{totals['rows_lost']:>6}{totals['duplicates']:>7}"
    )
    print("faults injected by kind: " + ", ".join(f"{kind} {n}" for kind, n in sorted(faults.items())))
    return 1 if totals["rows_lost"] or totals["duplicates"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
