"""Decimal text for whole numpy columns at once, as NUL-terminated wire fields, without a Python object per value.

A column's text is a `TextBlock`: a (rows, width) byte matrix plus a mask of the bytes that belong to
the text; unmasked bytes are skipped. Blocks side by side make a row's fields, and the masked bytes
in row-major order are the frame payload, so text never needs to be left-aligned or padded.

Prices (`doubles`) come out exactly as `framing.java_double` writes them (Java's `Double.toString`, as
IB sends doubles), volumes and waps (`numbers`) as `framing.format_number` (plain decimal text, as IB
sends Decimals): values that are whole cents (every tick-rounded price, volumes, counts, -1 sentinels)
through integer arithmetic; anything else (waps, BID_ASK's averaged prices, replayed values) through
Python's own `repr`, the function both formatters build on, so the text is byte-identical by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harvester.sim.wire.framing import format_number, java_double

_ZERO, _MINUS, _DOT = ord("0"), ord("-"), ord(".")
_POW10 = 10 ** np.arange(19, dtype=np.int64)
_CENTS_LIMIT = 1e13  # below this, distinct cents are distinct doubles, so repr is the cents text
_REPR_EXPONENT = (1e-4, 1e16)  # outside [low, high) repr switches to exponent notation
_JAVA_PLAIN = (1e-3, 1e7)  # inside [low, high) Double.toString writes plain decimals (and repr is the same)


@dataclass
class TextBlock:
    """Text of one field (or part of one) for every row: bytes plus which of them are used."""

    data: np.ndarray  # (rows, width) uint8
    mask: np.ndarray  # (rows, width) bool

    @classmethod
    def constant(cls, rows: int, text: bytes, used: np.ndarray | None = None) -> TextBlock:
        """The same text on every row (or only where `used`); text may be b"\\0", the field terminator."""
        data = np.broadcast_to(np.frombuffer(text, dtype=np.uint8), (rows, len(text)))
        mask = (
            np.ones((rows, len(text)), dtype=bool) if used is None else np.repeat(used[:, None], len(text), 1)
        )
        return cls(data, mask)


def payload(blocks: list[TextBlock]) -> bytes:
    """The used bytes of the blocks, row by row, left to right."""
    data = np.concatenate([b.data for b in blocks], axis=1)
    mask = np.concatenate([b.mask for b in blocks], axis=1)
    return np.compress(mask.ravel(), data.ravel()).tobytes()  # 5x faster than data[mask]


def digits(values: np.ndarray, min_digits: int = 1) -> TextBlock:
    """Non-negative integers in decimal, right-aligned, without leading zeros beyond `min_digits`."""
    width = max(min_digits, len(str(int(values.max()))) if len(values) else 1)
    powers = _POW10[width - 1 :: -1]
    data = (values[:, None] // powers % 10 + _ZERO).astype(np.uint8)
    mask = values[:, None] >= powers
    mask[:, width - min_digits :] = True
    return TextBlock(data, mask)


def integers(values: np.ndarray) -> list[TextBlock]:
    """Signed integers as `str(int)` writes them."""
    negative = values < 0
    if not negative.any():
        return [digits(values)]
    return [TextBlock.constant(len(values), b"-", negative), digits(np.abs(values))]


def numbers(values: np.ndarray) -> list[TextBlock]:
    """Floats as `format_number` writes them (Decimal fields): whole cents by arithmetic, the rest by `repr`."""
    with np.errstate(invalid="ignore", over="ignore"):
        cents = np.rint(values * 100.0)
        exact = np.isfinite(values) & (np.abs(values) < _CENTS_LIMIT) & (cents / 100.0 == values)
    return _cents_text(values, cents, exact, java=False) + _others(values, exact, _repr_texts)


def doubles(values: np.ndarray) -> list[TextBlock]:
    """Floats as `java_double` writes them (prices): whole cents by arithmetic, the rest by `java_double`."""
    with np.errstate(invalid="ignore", over="ignore"):
        cents = np.rint(values * 100.0)
        magnitude = np.abs(values)
        plain = ((magnitude >= _JAVA_PLAIN[0]) & (magnitude < _JAVA_PLAIN[1])) | ((values == 0) & ~np.signbit(values))
        exact = plain & (cents / 100.0 == values)
    return _cents_text(values, cents, exact, java=True) + _others(values, exact, _java_texts)


def _cents_text(values: np.ndarray, cents: np.ndarray, exact: np.ndarray, java: bool) -> list[TextBlock]:
    """The rows that are whole cents: `-`, whole part, then `.dd`/`.d` when there is a fraction; Java
    writes `.0` for a whole number, format_number nothing."""
    blocks = []
    rows = len(values)
    if exact.any():
        cents = np.where(exact, cents, 0.0).astype(np.int64)
        magnitude = np.abs(cents)
        whole, fraction = magnitude // 100, magnitude % 100
        if (cents < 0).any():
            blocks.append(TextBlock.constant(rows, b"-", cents < 0))
        tens, units = exact & ((fraction != 0) | java), exact & (fraction % 10 != 0)
        blocks += [
            _only(digits(whole), exact),
            TextBlock.constant(rows, b".", tens),
            TextBlock((fraction // 10 + _ZERO).astype(np.uint8)[:, None], tens[:, None]),
            TextBlock((fraction % 10 + _ZERO).astype(np.uint8)[:, None], units[:, None]),
        ]
    return blocks


def _others(values: np.ndarray, done: np.ndarray, texts) -> list[TextBlock]:
    """A block with `texts(values)` for the rows not `done`, or none."""
    rest = np.flatnonzero(~done)
    return [_texts(len(values), rest, texts(values[rest]))] if len(rest) else []


def _java_texts(values: np.ndarray) -> list[str]:
    return [java_double(v) for v in values.tolist()]


def _repr_texts(values: np.ndarray) -> list[str]:
    """`format_number` of values that are not whole cents: plain `repr` wherever that is the same
    (fractional, no exponent), `format_number` itself for the rest."""
    texts = list(map(repr, values.tolist()))
    with np.errstate(invalid="ignore"):
        magnitude = np.abs(values)
        plain = (
            (magnitude >= _REPR_EXPONENT[0]) & (magnitude < _REPR_EXPONENT[1]) & (values != np.floor(values))
        )
    for k in np.flatnonzero(~plain).tolist():
        texts[k] = format_number(float(values[k]))
    return texts


def _only(block: TextBlock, rows: np.ndarray) -> TextBlock:
    return TextBlock(block.data, block.mask & rows[:, None])


def _texts(rows: int, at: np.ndarray, texts: list[str]) -> TextBlock:
    """A block holding `texts[i]` on row `at[i]` and nothing elsewhere."""
    width = max(map(len, texts))
    packed = np.array(texts, dtype=f"S{width}").view(np.uint8).reshape(len(texts), width)
    data = np.zeros((rows, width), dtype=np.uint8)
    data[at] = packed
    return TextBlock(data, data != 0)
