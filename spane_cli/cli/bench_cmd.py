"""`spane bench`: spane against raw RQ on the same Redis and database, in one run."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any, Protocol, TypeVar

import typer

if TYPE_CHECKING:
    from spane_cli.bench.baseline import BaselineResult
    from spane_cli.bench.measure import ScenarioResult


class _HasSeconds(Protocol):
    @property
    def seconds(self) -> float: ...


_Timed = TypeVar("_Timed", bound=_HasSeconds)

HELP = (
    "Benchmark spane against raw RQ in the same run. Starts W spane workers and W RQ "
    "SimpleWorkers on the configured Redis and database, runs a fan-out, a chain, a fan-in, "
    "many small workflows and (unless --no-scale) fan-outs of 1,000 and 10,000, and prints "
    "nodes/s, ms per hop, dispatch latency (ready -> started), database transactions per "
    "node, worker RSS, and the ratios to the RQ baseline. Times come from the executions' own "
    "timestamps."
)


def bench(
    ctx: typer.Context,
    workers: Annotated[
        int, typer.Option("--workers", "-w", help="Workers on each side.", min=1)
    ] = 2,
    fanout: Annotated[int, typer.Option("--fanout", help="Children of the fan-out.", min=1)] = 500,
    chain: Annotated[int, typer.Option("--chain", help="Length of the chain.", min=2)] = 100,
    fanin: Annotated[int, typer.Option("--fanin", help="Parents of the join.", min=1)] = 500,
    small: Annotated[int, typer.Option("--small", help="Number of 3-node workflows.", min=0)] = 200,
    scale: Annotated[
        bool, typer.Option("--scale/--no-scale", help="Also 1k and 10k fan-outs.")
    ] = True,
    repeat: Annotated[
        int,
        typer.Option(
            "--repeat",
            "-r",
            help="Runs of every measurement, baseline included; the median run is reported "
            "(a run of a few hundred milliseconds is at the mercy of scheduling noise).",
            min=1,
        ),
    ] = 3,
) -> None:
    from spane_cli.bench.baseline import depends_on_chain, drain_jobs
    from spane_cli.bench.measure import (
        WorkerPool,
        background_commits_per_second,
        run_scenario,
        settle,
    )
    from spane_cli.bench.workloads import BENCH_QUEUE, fan_in, fan_out
    from spane_cli.bench.workloads import chain as chain_flow
    from spane_cli.bench.workloads import small as small_flow
    from spane_cli.cli.render import print_data
    from spane_cli.cli.services import store_and_dispatcher
    from spane_cli.engine.connections import database_url

    settings, store, dispatcher = store_and_dispatcher(ctx)
    connection = dispatcher.connection
    progress = sys.stderr
    progress.write(f"baseline: {workers} RQ SimpleWorkers draining {fanout} no-op jobs\n")
    rq_drain = _median(
        [drain_jobs(connection, settings.redis_url, fanout, workers) for _ in range(repeat)]
    )
    progress.write(f"baseline: RQ depends_on chain of {chain}\n")
    rq_chain = _median(
        [depends_on_chain(connection, settings.redis_url, chain, workers) for _ in range(repeat)]
    )
    pool = WorkerPool(workers, database_url(settings), settings.redis_url, BENCH_QUEUE)
    pool.start()
    results: dict[str, Any] = {}
    try:
        rss_before = pool.rss()
        progress.write("spane: background commits with idle workers\n")
        background = background_commits_per_second(store.database)
        scenarios: list[tuple[str, str, int]] = [
            ("fanout", fan_out(fanout), 1),
            ("chain", chain_flow(chain), 1),
            ("fanin", fan_in(fanin), 1),
        ]
        if small:
            scenarios.append(("small", small_flow(), small))
        if scale:
            scenarios += [("scale_1k", fan_out(1000), 1), ("scale_10k", fan_out(10000), 1)]
        for name, text, count in scenarios:
            progress.write(f"spane: {name}\n")
            runs: list[ScenarioResult] = []
            for _ in range(repeat):
                settle(store.database)
                run = run_scenario(
                    store, dispatcher, name, text, count,
                    background_per_second=background, sample_rss=pool.rss,
                )  # fmt: skip
                run.worker_rss_kib = pool.rss()
                runs.append(run)
                progress.write(f"  run {len(runs)}/{repeat}: {run.seconds:.3f} s\n")
            results[name] = _median(runs)
        rss_after = pool.rss()
    finally:
        pool.stop()
    report = _report(results, rq_drain, rq_chain, workers, rss_before, rss_after)
    report["background_commits_per_second"] = round(background, 1)
    report["runs_per_measurement"] = repeat
    if not print_data(report, settings.output):
        _print_table(report)


def _median(runs: list[_Timed]) -> _Timed:
    """The run of median duration (the upper one of an even count)."""
    return sorted(runs, key=lambda run: run.seconds)[len(runs) // 2]


def _report(
    results: dict[str, ScenarioResult],
    rq_drain: BaselineResult,
    rq_chain: BaselineResult,
    workers: int,
    rss_before: list[int],
    rss_after: list[int],
) -> dict[str, Any]:
    scenarios = {
        name: {
            "nodes": r.nodes,
            "seconds": round(r.seconds, 4),
            "nodes_per_second": round(r.nodes_per_second, 1),
            "ms_per_node": round(r.ms_per_node, 3),
            "dispatch_latency_p50_ms": round(r.latency_p50_ms, 2),
            "dispatch_latency_p99_ms": round(r.latency_p99_ms, 2),
            "transactions_per_node": _rounded(r.transactions_per_node),
            "transactions_per_node_total": _rounded(r.transactions_per_node_total),
            "failed_executions": r.failed,
            "worker_rss_kib_at_quarter": r.worker_rss_kib_quarter,
            "worker_rss_kib_after": r.worker_rss_kib,
        }
        for name, r in results.items()
    }
    ratios: dict[str, float | None] = {}
    if "fanout" in results:
        ratios["fanout_vs_rq_jobs_per_second"] = round(
            results["fanout"].nodes_per_second / rq_drain.per_second, 3
        )
    if "chain" in results:
        ratios["chain_ms_per_hop_vs_rq_depends_on"] = round(
            results["chain"].ms_per_node / rq_chain.ms_per_job, 3
        )
    if "fanin" in results and "fanout" in results:
        ratios["fanin_time_vs_fanout_time"] = round(
            results["fanin"].seconds / results["fanout"].seconds, 3
        )
    if "scale_1k" in results and "scale_10k" in results:
        ratios["scale_10k_time_vs_1k_time"] = round(
            results["scale_10k"].seconds / results["scale_1k"].seconds, 3
        )
    return {
        "workers": workers,
        "baseline": {
            "rq_drain": {
                "jobs": rq_drain.jobs,
                "seconds": round(rq_drain.seconds, 4),
                "jobs_per_second": round(rq_drain.per_second, 1),
            },
            "rq_depends_on_chain": {
                "jobs": rq_chain.jobs,
                "seconds": round(rq_chain.seconds, 4),
                "ms_per_hop": round(rq_chain.ms_per_job, 3),
            },
        },
        "scenarios": scenarios,
        "ratios": ratios,
        "worker_rss_kib": {"before": rss_before, "after": rss_after},
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _print_table(report: dict[str, Any]) -> None:
    from rich.table import Table

    from spane_cli.cli.tables import console

    out = console()
    out.width = max(out.width, 150)  # the table is read in logs and CI output too
    base = report["baseline"]
    out.print(f"median of {report['runs_per_measurement']} runs for every figure below")
    out.print(
        f"baseline ({report['workers']} RQ SimpleWorkers): "
        f"{base['rq_drain']['jobs_per_second']} jobs/s, "
        f"depends_on chain {base['rq_depends_on_chain']['ms_per_hop']} ms/hop"
    )
    table = Table(show_edge=False)
    for column in (
        "scenario",
        "nodes",
        "seconds",
        "nodes/s",
        "ms/node",
        "p50 ms",
        "p99 ms",
        "tx/node",
        "tx/node all",
        "RSS MiB at 1/4 time",
        "RSS MiB at end",
    ):
        table.add_column(column, justify="right")
    for name, s in report["scenarios"].items():
        table.add_row(
            name, str(s["nodes"]), f"{s['seconds']:.3f}", f"{s['nodes_per_second']:.0f}",
            f"{s['ms_per_node']:.2f}", f"{s['dispatch_latency_p50_ms']:.1f}",
            f"{s['dispatch_latency_p99_ms']:.1f}",
            _cell(s["transactions_per_node"]), _cell(s["transactions_per_node_total"]),
            _mib(s["worker_rss_kib_at_quarter"]), _mib(s["worker_rss_kib_after"]),
        )  # fmt: skip
    out.print(table)
    for name, value in report["ratios"].items():
        out.print(f"{name}: {value}")
    rss = report["worker_rss_kib"]
    out.print(f"worker RSS KiB before {rss['before']} after {rss['after']}")
    out.print(
        "tx/node: the nodes' own commits, after taking out the bench's polls and the "
        f"{report['background_commits_per_second']}/s that idle workers commit "
        "(heartbeats, reconciler); tx/node all: every commit in the database"
    )


def _mib(kib: list[int]) -> str:
    return " ".join(f"{k / 1024:.0f}" for k in kib) or "-"


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
