"""``trainwise runs list|show|compare|rm|gc|reindex``: the run index from the command line.
Imports no torch (``python -X importtime -m trainwise runs list`` shows it)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from trainwise.errors import ConfigError
from trainwise.runfolder.index import reader_root
from trainwise.runs import listing, store

TABLE_LIMIT = 50  # the table shows this many runs unless --limit says otherwise (csv and json: all)


def runs(args: argparse.Namespace) -> int:
    root = reader_root(args.root)
    return ACTIONS[args.runs_command](args, root)


def list_runs(args: argparse.Namespace, root: Path) -> int:
    if args.limit is not None and args.limit < 0:
        raise ConfigError(f"--limit must be >= 0 (0: every run), got {args.limit}")
    limit = args.limit if args.limit is not None else (TABLE_LIMIT if args.format == "table" else 0)
    every = store.load_runs(root, listing.query_keys(args.where, args.sort))
    chosen = listing.select(every, where=args.where, sort=args.sort, limit=limit or None)
    columns = listing.columns_for(chosen, where=args.where, sort=args.sort, extra=args.columns)
    if args.format == "csv":
        sys.stdout.write(listing.to_csv(chosen, columns))
    elif args.format == "json":
        sys.stdout.write(listing.to_json(chosen) + "\n")
    else:
        matched = len(listing.select(every, where=args.where, sort=None, limit=None)) if args.where else len(every)
        listing.print_table(chosen, columns, total=len(every))
        if len(chosen) < matched:
            print(f"showing the first {len(chosen)} of {matched} matching runs; --limit 0 shows all")
        missing = sum(run.status == "missing" for run in every)
        if missing:
            print(f"{missing} run folder(s) are gone (status missing); `trainwise runs gc` forgets them")
    return 0


def show(args: argparse.Namespace, root: Path) -> int:
    run = store.resolve(store.load_runs(root), args.run)
    print(json.dumps(listing.as_dict(run), indent=2, default=str))
    return 0


def compare(args: argparse.Namespace, root: Path) -> int:
    from trainwise.runs.compare import compare_runs
    from trainwise.runs.compare_text import print_comparison

    if args.draw < 1:
        raise ConfigError(f"--draw must be >= 1, got {args.draw}")
    every = store.load_runs(root)
    chosen = [store.resolve(every, spec) for spec in args.run]
    comparison = compare_runs(chosen, all_params=args.all, drawn=args.draw)
    print_comparison(comparison)
    if args.out:
        from trainwise.runs import compare_html

        print(f"compare page: {compare_html.write(comparison, Path(args.out))}")
    return 0


def remove(args: argparse.Namespace, root: Path) -> int:
    every = store.load_runs(root)
    chosen = [store.resolve(every, spec) for spec in args.run]
    for run in chosen:
        if run.live:  # refuse before touching any of them
            store.remove(root, run, force=args.force)
    for run in chosen:
        moved = store.remove(root, run, force=args.force)
        print(f"removed {run.id} ({run.name})" + (f"; its folder is in {moved} until `trainwise runs gc`"
                                                   if moved else ""))
    return 0


def collect(args: argparse.Namespace, root: Path) -> int:
    counts = store.collect(root, store.load_runs(root))
    print(f"forgot {counts['forgotten']} run(s) whose folder is gone, emptied {counts['trash_emptied']} from the "
          f"trash, deleted {counts['temporary_files']} temporary file(s)")
    return 0


def reindex(args: argparse.Namespace, root: Path) -> int:
    if not root.is_dir():
        raise ConfigError(f"runs root {root} is not a folder; pass --root with the folder of your runs")
    count = store.reindex(root)
    print(f"indexed {count} run(s) under {root}")
    return 0


ACTIONS = {"list": list_runs, "show": show, "compare": compare, "rm": remove, "gc": collect, "reindex": reindex}
