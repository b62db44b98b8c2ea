"""`harvest status`: what the warehouse holds, per bar size, readable in five seconds; `--pacing`: each
gateway's shared pacing budget (the ledger), in use and by whom."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import click

from harvester import ledger_path, ledger_usage
from harvester.cli.exits import warehouse_errors
from harvester.cli.options import data_dir_option, settings_for
from queries import warehouse_status


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _pacing(as_json: bool) -> None:
    usage = ledger_usage()
    if as_json:
        click.echo(json.dumps({"ledger": str(ledger_path()), "gateways": [dataclasses.asdict(u) for u in usage]},
                              indent=1))
        return
    click.echo(f"pacing ledger: {ledger_path()}")
    if not usage:
        click.echo("no sends within any gateway's window")
    for gateway in usage:
        margin = "" if gateway.margin_peak_s is None else (
            f"; margin widened to {gateway.margin_peak_s:.3g} s at "
            f"{datetime.fromtimestamp(gateway.margin_since, UTC):%H:%M:%S} UTC")
        click.echo(f"{gateway.gateway}: {gateway.weighted} weighted sends in the window, {gateway.open} open{margin}")
        for sender in gateway.senders:
            state = "" if sender.alive else " (exited)"
            click.echo(f"  pid {sender.pid}{state}: {sender.weighted} weighted, {sender.open} open  {sender.command}")


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--pacing", is_flag=True, help="Each gateway's shared pacing budget: sends in use, and by whom.")
@data_dir_option
@click.pass_context
def status_command(ctx: click.Context, as_json: bool, pacing: bool, data_dir: str | None) -> None:
    """What the warehouse holds, per bar size, readable in five seconds (--pacing: the pacing budget)."""
    if pacing:
        _pacing(as_json)
        return
    with warehouse_errors():
        report = warehouse_status(settings_for(ctx, data_dir=data_dir).data_dir)
    if as_json:
        click.echo(json.dumps(report, indent=1))
        return
    origin = {True: "SIMULATED", False: "real"}.get(report["simulated"], "unknown origin")
    version = "" if report["version"] is None else f", bars table version {report['version']}"
    click.echo(f"{report['data_dir']}  ({origin}{', ' + report['gateway'] if report['gateway'] else ''}{version})")
    if not report["bar_sizes"]:
        click.echo("empty warehouse: no bars yet")
        return
    head = f"{'bar size':9} {'series':>6} {'from':>10} {'to':>10} {'bars':>12} {'missing':>7} {'files':>5} "
    click.echo(head + f"{'size':>9}  last commit (UTC)")
    for r in report["bar_sizes"]:
        click.echo(
            f"{r['bar_size']:9} {r['series']:>6} {(r['first_day'] or '-')[:10]:>10} {(r['last_day'] or '-')[:10]:>10} "
            f"{r['bars']:>12,} {r['missing_sessions']:>7} {r['files']:>5} {_human_bytes(r['bytes']):>9}  "
            f"{(r['last_commit'] or '-')[:19]}"
        )
