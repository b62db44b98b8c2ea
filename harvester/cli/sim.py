"""`harvest sim`: run a simulated IB Gateway until SIGINT/SIGTERM (exit code 0).

Every option maps onto SimConfig / Faults; see `harvester.sim.faults` for the fault catalogue. A bad option
or file, or a port already in use, is one line and exit 2.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import datetime

import click

from harvester.cli.exits import Exit, fail
from harvester.sim.clock import ClockError, parse_instant
from harvester.sim.faults import ERRORS, ErrorSpec, FaultError, Faults
from harvester.sim.gateway import SimGateway
from harvester.sim.hmds import PROFILES, RULES
from harvester.sim.options import SimConfig
from harvester.sim.rules import SMALL_BAR_SIZES, PacingLimits

SIM_PORT = 7900


def _instant(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_instant(value)
    except ClockError as exc:
        raise ValueError(str(exc)) from None


def _error_spec(text: str) -> ErrorSpec:
    """KIND, or CODE:TEXT."""
    if text in ERRORS:
        return text
    code, sep, message = text.partition(":")
    if not sep or not code.strip().isdigit():
        raise ValueError(f"{text!r} is neither an error kind ({', '.join(ERRORS)}) nor CODE:TEXT")
    return int(code), message


def _symbol_errors(items: tuple[str, ...]) -> dict[str, ErrorSpec]:
    errors = {}
    for item in items:
        symbol, sep, spec = item.partition("=")
        if not sep or not symbol:
            raise ValueError(f"{item!r} is not SYMBOL=KIND or SYMBOL=CODE:TEXT")
        errors[symbol] = _error_spec(spec)
    return errors


@click.command("sim")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=SIM_PORT, show_default=True, type=click.IntRange(0, 65535),
              help="0 picks a free port. The default is no IB product's (TWS 7496/7497, Gateway 4001/4002), so a "
                   "harvest meant for the simulator never reaches a running TWS instead.")
@click.option("--now", help="Simulated start time (ISO 8601); it then advances in real time.")
@click.option("--contracts", type=click.Path(exists=True, dir_okay=False), help="Securities master CSV.")
@click.option("--replay", type=click.Path(exists=True), help="Serve bars from these files (traded prices).")
@click.option("--actions", type=click.Path(exists=True, dir_okay=False),
              help="Corporate actions CSV/Parquet (symbol or con_id, ex_date, kind, value); default: bundled.")
@click.option("--no-actions", is_flag=True, help="No corporate actions: history never changes.")
@click.option("--revise-latest", default=0.0, type=click.FloatRange(0, 1, max_open=True), metavar="FRACTION",
              help="Serve the latest session this fraction short (volume, wicks) until the next one closes.")
@click.option("--account", default=SimConfig.account, show_default=True,
              help="The account managedAccounts lists; one starting DUSIM tells a harvest it is the simulator.")
@click.option("--pacing-scale", default=1.0, show_default=True, type=float, help="0.01 turns 600 s into 6 s.")
@click.option("--latency-scale", type=float, help="Defaults to --pacing-scale.")
@click.option("--pace-small-bars-only", is_flag=True, help="Hard pacing rules only for bars of 30 s or less.")
@click.option("--stamp-lag", default=0.0, show_default=True, type=click.FloatRange(min=0), metavar="SECONDS",
              help="Pacing stamps trail receipt by up to this (uniform, seeded, unscaled): IB's unseen queueing.")
@click.option("--rules", type=click.Choice(RULES), default="legacy", show_default=True,
              help="legacy: the hard pacing rules for every bar size; current: for bars of 30 s or less, and a "
                   "soft throttle (slower answers, then a disconnect) for 1 min and up (docs/sim-hmds.md).")
@click.option("--hmds-profile", type=click.Choice(sorted(PROFILES)), default="quiet", show_default=True,
              help="How HMDS answers: quiet (linear in bars) or busy (ib_insync #268: nothing over 2,000 bars).")
@click.option("--hmds-max-bars", type=click.IntRange(min=1), metavar="N",
              help="Leave intraday answers over N bars unanswered (the client times out and cancels).")
@click.option(
    "--journal", "journal_path", type=click.Path(dir_okay=False), help="JSON-lines request journal."
)
@click.option("--drop-after", type=int, help="Serve N data requests, then close every socket.")
@click.option("--drop-at", help="Close every socket at this simulated instant (ISO 8601).")
@click.option("--never-answer", is_flag=True, help="Answer no data request at all.")
@click.option("--never-answer-nth", type=int, help="Leave the Nth data request unanswered.")
@click.option(
    "--never-answer-symbol", multiple=True, help="Leave requests for SYMBOL unanswered (repeatable)."
)
@click.option(
    "--force-error", help=f"Fail every historical request: KIND ({', '.join(ERRORS)}) or CODE:TEXT."
)
@click.option("--error-symbol", multiple=True, help="SYMBOL=KIND or SYMBOL=CODE:TEXT (repeatable).")
@click.option("--error-rate", default=0.0, type=float, help="Fail this fraction of historical requests.")
@click.option(
    "--random-error", default="pacing", show_default=True, help="KIND or CODE:TEXT for --error-rate."
)
@click.option("--seed", default=0, type=int, show_default=True)
@click.option("--outage-at", help="Send 1100 at this simulated instant, 1102 after --outage-seconds.")
@click.option("--outage-seconds", default=30.0, show_default=True, type=float)
@click.option(
    "--hmds-outage-at", help="Send 2105 at this simulated instant, 2106 after --hmds-outage-seconds."
)
@click.option("--hmds-outage-seconds", default=30.0, show_default=True, type=float)
@click.option("--bad-bars", "bad_bar_rate", default=0.0, type=float,
              help="Break this fraction of served bars (high below low, negative volume, a bar after the close).")
@click.option("--bad-bars-symbol", multiple=True, help="Break bars of SYMBOL only (repeatable; needs --bad-bars).")
@click.option("--bad-bars-until", help="Serve clean bars again from this simulated instant (ISO 8601).")
def sim_command(**opts) -> None:
    """Run a simulated IB Gateway (TWS API v176) on loopback until interrupted."""
    try:
        faults = Faults(
            drop_after_requests=opts["drop_after"],
            drop_at=_instant(opts["drop_at"]),
            never_answer=opts["never_answer"],
            never_answer_nth=opts["never_answer_nth"],
            never_answer_symbols=set(opts["never_answer_symbol"]),
            force_error=_error_spec(opts["force_error"]) if opts["force_error"] else None,
            error_symbols=_symbol_errors(opts["error_symbol"]),
            random_error_rate=opts["error_rate"],
            random_error=_error_spec(opts["random_error"]),
            seed=opts["seed"],
            outage_at=_instant(opts["outage_at"]),
            outage_seconds=opts["outage_seconds"],
            hmds_outage_at=_instant(opts["hmds_outage_at"]),
            hmds_outage_seconds=opts["hmds_outage_seconds"],
            bad_bar_rate=opts["bad_bar_rate"],
            bad_bar_symbols=set(opts["bad_bars_symbol"]),
            bad_bars_until=_instant(opts["bad_bars_until"]),
        )
        config = SimConfig(
            host=opts["host"],
            port=opts["port"],
            contracts=opts["contracts"],
            replay=opts["replay"],
            actions=False if opts["no_actions"] else opts["actions"] or True,
            revise_latest=opts["revise_latest"],
            now=_instant(opts["now"]),
            pacing_scale=opts["pacing_scale"],
            latency_scale=opts["latency_scale"],
            journal_path=opts["journal_path"],
            faults=faults,
            account=opts["account"],
            pacing=PacingLimits(bar_sizes=SMALL_BAR_SIZES if opts["pace_small_bars_only"] else None),
            stamp_lag_s=opts["stamp_lag"],
            rules=opts["rules"],
            hmds=PROFILES[opts["hmds_profile"]].with_max_bars(opts["hmds_max_bars"]),
        )
    except (FaultError, ValueError) as exc:
        fail(Exit.BAD_INPUT, str(exc))
    asyncio.run(_serve(config))


async def _serve(config: SimConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    gateway = SimGateway(config)
    try:
        await gateway.start()
    except ValueError as exc:  # a bad securities master, replay or corporate-actions file: one line, exit 2
        await gateway.stop()
        fail(Exit.BAD_INPUT, str(exc))
    except OSError as exc:  # the port is taken (errno 98) or the host is not ours
        await gateway.stop()
        fail(Exit.BAD_INPUT, f"--host {config.host} --port {config.port}: cannot listen ({exc.strerror or exc}); "
                             "another program holds it: choose another port (0 picks a free one)")
    try:
        click.echo(f"simulated IB Gateway listening on {config.host}:{gateway.port} (server version 176)")
        await stop.wait()
    finally:
        await gateway.stop()
    click.echo("simulated IB Gateway stopped")
