"""`harvest plot coverage|candles`: PNG pictures of the warehouse."""

from __future__ import annotations

from pathlib import Path

import click

from harvester.cli.exits import Exit, fail, warehouse_errors
from harvester.cli.options import data_dir_option, settings_for
from harvester.cli.outputs import checked_output


@click.command("plot")
@click.argument("kind", type=click.Choice(["coverage", "candles"]))
@click.option("--symbol", help="Symbol (candles: required; coverage: optional filter).")
@click.option("--bar-size", default="1 day", show_default=True, help="IB bar size.")
@click.option("--start", help="First instant (UTC date or time); default: all.")
@click.option("--end", help="Last instant, excluded; default: all.")
@click.option("--max-bars", type=click.IntRange(min=1), default=400, show_default=True,
              help="Candles: draw at most the last this many bars of the range (the title says when cut).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="PNG path (default KIND.png).")
@data_dir_option
@click.pass_context
def plot_command(ctx: click.Context, kind: str, symbol: str | None, bar_size: str, start: str | None,
                 end: str | None, max_bars: int, output: Path | None, data_dir: str | None) -> None:
    """Coverage heat map (series × time) or candlesticks of one symbol, to PNG."""
    from queries import plot

    target = checked_output(output or Path(f"{kind}.png"))
    data_dir = settings_for(ctx, data_dir=data_dir).data_dir
    if kind == "candles" and not symbol:
        fail(Exit.BAD_INPUT, "plot candles needs --symbol")
    try:
        with warehouse_errors():
            if kind == "candles":
                plot.candles(symbol, target, bar_size=bar_size, start=start, end=end, data_dir=data_dir,
                             max_bars=max_bars)
            else:
                plot.coverage_map(target, bar_size=bar_size, symbol=symbol, data_dir=data_dir)
    except (plot.PlotError, ValueError) as exc:
        fail(Exit.BAD_INPUT, str(exc))
    click.echo(f"wrote {target}")
