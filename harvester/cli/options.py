"""Settings for every verb come from one place: `harvester.settings.resolve_settings`.

The group's own options (`harvest --data-dir X status`) reach the subcommand; a subcommand's own option
of the same name wins. A group option that the subcommand has no use for is refused, never ignored.
"""

from __future__ import annotations

from typing import Any

import click

from harvester.cli.exits import Exit, fail
from harvester.settings import ConfigError, Settings, resolve_settings

data_dir_option = click.option(
    "--data-dir", type=str,  # not click.Path: it would collapse s3:// to s3:/
    help="Warehouse: a folder or s3://bucket/prefix (default: HARVEST_DATA_DIR, harvest.toml, ./data).",
)


def settings_for(ctx: click.Context, **own: Any) -> Settings:
    """The subcommand's settings: defaults ← harvest.toml ← environment ← the group's options ← its own."""
    given = dict((ctx.find_root().obj or {}).get("settings", {}))
    given.update({k: v for k, v in own.items() if v is not None})
    try:
        return resolve_settings(given)
    except ConfigError as exc:
        fail(Exit.BAD_INPUT, str(exc))


def group_options_for_subcommand(ctx: click.Context, options: dict[str, Any], usable: set[str]) -> dict:
    """The group options a subcommand receives; any other that was given is a one-line error."""
    given = {k: v for k, v in options.items() if v not in (None, (), False) and
             ctx.get_parameter_source(k) is not click.core.ParameterSource.DEFAULT}
    stray = sorted(set(given) - usable)
    if stray:
        flag = next(p.opts[0] for p in ctx.command.params if p.name == stray[0])
        fail(Exit.BAD_INPUT, f"{flag} does not apply to `harvest {ctx.invoked_subcommand}`; "
                             f"give it to the nightly job (harvest --universe FILE ...)")
    return given
