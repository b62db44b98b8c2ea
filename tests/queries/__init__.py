"""Tests of the query layer (`queries`)."""
