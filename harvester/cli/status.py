"""`harvest status`: what the warehouse holds, per bar size, readable in five seconds."""

from __future__ import annotations

import json

import click

from harvester.cli.exits import warehouse_errors
from harvester.cli.options import data_dir_option, settings_for
from queries import warehouse_status


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@data_dir_option
@click.pass_context
def status_command(ctx: click.Context, as_json: bool, data_dir: str | None) -> None:
    """What the warehouse holds, per bar size, readable in five seconds."""
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
