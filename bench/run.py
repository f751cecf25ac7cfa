"""`python -m bench.run [--quick]`: the bridge measured against its real limits, in one run.

The table has a column per database set-up: SQLite with one bridge process, PostgreSQL with
one, and PostgreSQL with three sharing a schema (the load generator and HighLevel's webhooks
go to them in turn, as through a round-robin balancer). Each column gets a fresh database (a
new SQLite file, or a schema made for it and dropped after it) and fresh simulators. When the
PostgreSQL server does not answer, one loud line says so and the run has the SQLite column.

Each bridge runs as its own process (`python -m bot serve`), so its CPU and memory are its
own; the HighLevel and Slack simulators run here, in the orchestrator; the load comes from a
third process (`bench._loadgen`). Per column (`bench._columns`):

1. outbound: N quick sends through the outbox into a HighLevel with its own limit (100
   requests per 10 s): the rate of HighLevel requests from the first against that ceiling
   (sends and contact look-ups; the sends' rate beside it), the pace of the whole run,
   429s, lost, doubled, and the bridges' CPU per send; then the same with the ceiling
   lifted out of reach: the bridges' own outbound capacity;
2. ack latency of signed `/sendsms` quick sends at each concurrency, next to a bare Bolt app
   (`bench.baseline`) served the same way, in alternating rounds, each round on connections
   warmed first, with the spread over rounds;
3. inbound: signed webhooks, in rounds, closed loop at a fixed concurrency into the floor
   servers (`bench.floor`: Ed25519 check, one INSERT and COMMIT into the column's backend; as
   many as the column has bridges) and then into the bridges (ingest as a ratio to the floor),
   then open loop at half the bridges' measured rate into both (accept latency below
   capacity; the run is not valid if the load generator falls behind its schedule), how fast
   they reach their Slack threads, and the bridges' CPU per inbound message;
4. the bridges' resident memory, idle, after the load and at peak (/proc/<pid>/status).

Then, once: thread look-ups in SQLite with many mapped threads (`bench._storage`).

CPU is the bridge processes' own, summed over the column's bridges (utime + stime in
/proc/<pid>/stat): the simulators, the load generator and the floor servers run in other
processes. It prints the table (each figure met, or missed by a factor, against its target)
and writes `bench/results.json`; it exits 1 when a figure misses and 2 when the run is not
valid. With `--pin` the servers get one CPU to themselves and everything else the others;
`--profile DIR` samples each bridge with py-spy during each phase.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from bench._columns import choose_columns, run_column
from bench._config import FULL, LOOKUP_P99_MAX_SECONDS, QUICK, SQLITE, BenchConfig
from bench._postgres import configured_url
from bench._procs import REPO_ROOT, LoadGenerator, Placement, pin
from bench._report import Report, at_most, render_table, reported
from bench._stats import load_average, machine, ms
from bench._storage import StorageResult, run_storage_bench
from storage import redact_url

RESULTS_PATH = REPO_ROOT / "bench" / "results.json"
ACK_NOTE = (
    "ack figures are mostly Bolt's 10 ms ack poll, in both servers; the bridge adds one INSERT"
)


def storage_rows(result: StorageResult, report: Report) -> None:
    report.data["storage"] = asdict(result)
    for name, timing in result.lookups.items():
        report.add(
            SQLITE,
            f"{name} p50 / p99 ({result.threads:,})",
            f"p99 <= {LOOKUP_P99_MAX_SECONDS * 1000:.0f} ms",
            at_most(
                timing.p99,
                LOOKUP_P99_MAX_SECONDS,
                f"{ms(timing.p50)} / {ms(timing.p99)}",
                also=timing.found == timing.samples,
            ),
        )
    report.add(
        SQLITE,
        "thread database size",
        "(reported)",
        reported(
            f"{result.database_bytes / 1e6:.0f} MB "
            f"({result.database_bytes / result.threads:.0f} B/thread)"
        ),
    )


async def run_bench(
    config: BenchConfig,
    workdir: Path,
    *,
    say: Callable[[str], None] = print,
    postgres_url: str | None = None,
    profile_dir: Path | None = None,
    pinned: bool = False,
) -> Report:
    """One complete run; ``workdir`` receives the databases, logs and load plans.

    ``postgres_url``: the server of the PostgreSQL columns (None: SQLite only). ``pinned``:
    the bridges (and the other servers) get the last CPU to themselves, this process and the
    load generator the others; otherwise the scheduler places everything.
    """
    report = Report(config)
    report.data["machine_at_start"] = machine()
    started = time.monotonic()
    placement = Placement.split() if pinned else None
    report.data["placement"] = (
        {"server_cpus": sorted(placement.server), "other_cpus": sorted(placement.others)}
        if placement
        else "unpinned"
    )
    if placement is not None:
        pin(os.getpid(), placement.others)  # the simulators stay off the bridges' CPU
    report.columns, problem = await choose_columns(config, postgres_url)
    report.data["postgres"] = {
        "url": redact_url(postgres_url) if postgres_url else None,
        "problem": problem,
    }
    if problem is not None:
        report.notes.append(problem)  # the one loud line, printed under the table
    report.notes.append(ACK_NOTE)
    loadgen = await LoadGenerator.start(
        workdir=workdir, cpus=placement.others if placement else None
    )
    try:
        for column in report.columns:
            await run_column(
                config,
                column,
                report,
                workdir=workdir / column.key,
                loadgen=loadgen,
                postgres_url=postgres_url,
                say=say,
                profile_dir=profile_dir,
                placement=placement,
            )
    finally:
        await loadgen.stop()
    say("storage: loading threads")
    storage = await run_storage_bench(
        workdir, threads=config.storage_threads, samples=config.storage_samples
    )
    storage_rows(storage, report)
    report.data["machine_at_end"] = {"load_average": load_average()}
    report.data["wall_seconds"] = time.monotonic() - started
    return report


def summary(report: Report) -> str:
    """The machine, the run's length and the load average through it, in one paragraph."""
    info = report.data["machine_at_start"]
    loads = "; ".join(
        f"{column.title}: "
        + ", ".join(
            f"after {phase} {spent['load_average_after']}"
            for phase, spent in report.of(column).get("cpu_seconds", {}).items()
        )
        for column in report.columns
    )
    return (
        f"{report.config.name} run in {report.data['wall_seconds']:.1f} s on "
        f"{info['cpu_model']}, {info['cores']} cores, Python {info['python']}, "
        f"{report.data['placement']}; load average at start {info['load_average']}; {loads}; "
        f"at end {report.data['machine_at_end']['load_average']}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller numbers, about a minute")
    parser.add_argument("--out", type=Path, default=RESULTS_PATH, help="where results go")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, DBs)")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default=configured_url(),
        help="the PostgreSQL server of the PostgreSQL columns (default: BENCH_DATABASE_URL, "
        "else TEST_DATABASE_URL, else postgresql://postgres@127.0.0.1:5432/test)",
    )
    parser.add_argument(
        "--sqlite-only", action="store_true", help="leave the PostgreSQL columns out"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample each bridge with py-spy during each phase (collapsed stacks into DIR)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="give the bridges (and the other servers) the last CPU; load generator and "
        "simulators get the others",
    )
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    workdir = Path(tempfile.mkdtemp(prefix="ghl-bench-"))
    try:
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
        report = asyncio.run(
            run_bench(
                config,
                workdir,
                say=lambda line: print(line, flush=True),
                postgres_url=None if args.sqlite_only else args.postgres,
                profile_dir=args.profile,
                pinned=args.pin,
            )
        )
    finally:
        if args.keep:
            print(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(render_table(report.rows, report.columns))
    print()
    for note in report.notes:
        print(note)
    print(summary(report))
    args.out.write_text(report.to_json(), "utf-8")
    print(f"results: {args.out}")
    if report.invalid:
        print(f"RUN NOT VALID: {'; '.join(report.invalid)}")
        return 2
    return 1 if report.missed else 0


if __name__ == "__main__":
    sys.exit(main())
