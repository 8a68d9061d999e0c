"""Run spane under faults and say what was lost, stuck or done twice.

    .venv/bin/python scripts/fault_injection.py [--executions 200] [--seed 1] [--json]

Starts a private PostgreSQL and a private Redis (nothing else is touched), two `spane worker
--concurrency 2`, submits a stream of workflows whose nodes append their side effects to a
log, and meanwhile kill -9s worker processes, restarts and flushes Redis, and restarts
PostgreSQL (fast and by a crash). Then it compares the log with the database. With
`--submissions N` it also runs N concurrent `spane run` against the default max_connections.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from spane_cli.faults.run import FAULT_KINDS, FaultPlan, FaultRun, concurrent_submissions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fault-every", type=float, default=2.0, help="seconds between faults")
    parser.add_argument("--faults", default=",".join(FAULT_KINDS), help="kinds, comma-separated")
    parser.add_argument("--submissions", type=int, default=0, help="concurrent `spane run`s")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="spane-faults-") as directory:
        plan = FaultPlan(
            executions=args.executions,
            seed=args.seed,
            fault_every_seconds=args.fault_every,
            faults=tuple(k for k in args.faults.split(",") if k),
        )
        report = FaultRun(plan, Path(directory), say).run().as_dict()
        say(json.dumps(report))  # kept even if the submission burst below goes wrong
        if args.submissions:
            codes = concurrent_submissions(Path(directory) / "burst", args.submissions, say)
            report["concurrent_submissions"] = {str(k): v for k, v in sorted(codes.items())}
    print(json.dumps(report, indent=None if args.json else 2))
    clean = not (report["stuck"] or report["lost"] or report["duplicate_completions"])
    return 0 if clean and not report["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
