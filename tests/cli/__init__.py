"""Tests of the `harvest` command line, through click's CliRunner and real processes."""
