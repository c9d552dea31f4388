"""`python -m pipeline_lib.anomalies list|show|ack|resolve|accept` (Airflow environment).

The database is PIPELINE_ANOMALY_DB (a SQLAlchemy URL; default the SQLite file .data/anomalies.db)
or --db. `--by` defaults to the login name; it is recorded as owner (ack) or resolver.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from pipeline_lib.anomalies.accepting import accept
from pipeline_lib.anomalies.models import OPEN, SEVERITIES, STATUSES
from pipeline_lib.anomalies.tracker import Tracker, TrackerError


def _row(a: dict) -> str:
    return (f"#{a['id']:<4} {a['status']:<12} {a['severity']:<8} {a['pipeline']}/{a['feature']}: {a['kind']} "
            f"(seen {a['occurrences']}x, last span {a['last_span']}){' NOT ALERTED' if a['alert_pending'] else ''}")


def show(a: dict) -> str:
    lines = [_row(a), f"  {a['description'].strip()}"]
    if a["examples"]:
        lines.append("  examples: " + ", ".join(map(str, a["examples"])))
    lines.append(f"  owner {a['owner'] or '-'}; opened {a['created_at']}; updated {a['updated_at']}")
    if a["resolved_by"]:
        lines.append(f"  {a['status']} by {a['resolved_by']} at {a['resolved_at']}")
    if a["note"]:
        lines.append(f"  note: {a['note']}")
    lines.append("  runs:")
    lines += [f"    {r['span']} {r['run_id']}  {r['run_url'] or ''}  statistics: {r['statistics'] or '-'}"
              for r in a["runs"]]
    if a["schema_diff"]:
        lines += ["  schema change:", *("    " + l for l in a["schema_diff"].splitlines())]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline_lib.anomalies", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", help="SQLAlchemy URL (default: PIPELINE_ANOMALY_DB or .data/anomalies.db)")
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="open and acknowledged anomalies (--status to choose)")
    ls.add_argument("--pipeline")
    ls.add_argument("--status", action="append", choices=STATUSES)
    ls.add_argument("--all", action="store_true", help="every status")
    ls.add_argument("--severity", choices=SEVERITIES)
    ls.add_argument("--feature")
    ls.add_argument("--kind")
    sub.add_parser("show").add_argument("id", type=int)
    for name in ("ack", "resolve", "accept"):
        p = sub.add_parser(name)
        p.add_argument("id", type=int)
        p.add_argument("--by", default=getpass.getuser())
        p.add_argument("--note")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        tracker = Tracker(args.db)
        if args.command == "list":
            status = None if args.all else (args.status or list(OPEN))
            found = tracker.list(pipeline=args.pipeline, status=status, severity=args.severity,
                                 feature=args.feature, kind=args.kind)
            print("\n".join(_row(a) for a in found) if found else "no anomalies")
        elif args.command == "show":
            print(show(tracker.get(args.id)))
        elif args.command == "accept":
            done = accept(tracker, args.id, args.by, args.note)
            print(done["diff"])
            print(_row(done) + f" by {done['resolved_by']}")
        else:
            done = getattr(tracker, args.command)(args.id, args.by, args.note)
            print(_row(done) + f" by {args.by}")
    except TrackerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
