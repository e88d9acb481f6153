"""``mmd cleanup``: delete results and uploads older than ``MMD_RESULT_TTL_S`` from storage
(local or S3); ``--every N`` repeats every N seconds (a sidecar), else one sweep (a cron job)."""

from __future__ import annotations

import argparse
import logging
import time

from core.settings import get_settings
from core.storage import make_storage
from service.retention import sweep


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--every", type=float, default=0.0,
                        help="repeat every N seconds (default: one sweep and exit)")
    parser.add_argument("--dry-run", action="store_true", help="report, delete nothing")


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    storage = make_storage(settings)
    while True:
        report = sweep(storage, settings.result_ttl_s, dry_run=args.dry_run)
        print(f"scanned={report.scanned} deleted={report.deleted} "
              f"bytes={report.deleted_bytes}", flush=True)
        if args.every <= 0:
            return 0
        time.sleep(args.every)
