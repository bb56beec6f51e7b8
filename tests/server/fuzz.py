"""A shape-aware fuzzer for `kms serve`: hostile request bodies built from each
operation's input shape (kms_core.model), seeded and deterministic.

``bodies(rng, op, known)`` yields JSON bodies (bytes) for one operation: mostly
one hostile member among otherwise plausible ones, sometimes a hostile body as
a whole.  Values JSON cannot carry through ``json.dumps`` (integer literals of
thousands of digits, ``NaN``, duplicate keys, lone surrogate escapes, nesting
deeper than the parser's limit) are written as raw JSON text.
"""
from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass

from kms_core.model import OPERATIONS, Shape


@dataclass(frozen=True)
class Raw:
    """Literal JSON text."""

    text: str


@dataclass(frozen=True)
class Pairs:
    """A JSON object written pair by pair (duplicate keys allowed)."""

    items: tuple


def dump(v) -> str:
    if isinstance(v, Raw):
        return v.text
    if isinstance(v, Pairs):
        return "{" + ",".join(f"{json.dumps(k)}:{dump(x)}" for k, x in v.items) + "}"
    if isinstance(v, dict):
        return dump(Pairs(tuple(v.items())))
    if isinstance(v, list):
        return "[" + ",".join(dump(x) for x in v) + "]"
    return json.dumps(v)  # ensure_ascii: a lone surrogate becomes a \\udXXX escape


DEEP = Raw("[" * 3000 + "]" * 3000)
HUGE_INT = Raw("9" * 4400)
NASTY_TEXT = ["\x00", "a\x00b", "\ud800", "x\udfff", "\ud83d", "\u202e\u0000", "\ufeff", "\uffff",
              "😀", "é" * 3, "\x7f\x1b[31m", "%s%n", "'\"\\", "alias/\x00", "alias/\ud800"]


class Fuzzer:
    def __init__(self, rng: random.Random, known: list[str]):
        self.rng = rng
        self.known = known  # key ids, ARNs, alias names that exist

    # -- one value per shape type ------------------------------------------------
    def hostile(self, shape: Shape, depth: int = 0):
        r = self.rng
        common = [None, True, 0, -1, 1.5, "", [], {}, DEEP, HUGE_INT, Raw("NaN"), Raw("-Infinity"),
                  Raw("1e999"), r.choice(NASTY_TEXT)]
        t = shape.type
        if t == "string":
            return r.choice([
                *common, "x" * ((shape.max or 2048) + 1), "y" * 70_000,
                r.choice(NASTY_TEXT) * r.randint(1, 50), (shape.enum or ["X"])[0] + "\x00",
                r.choice(self.known) + r.choice(NASTY_TEXT), "alias/" + "a" * 300,
                "arn:aws:kms:us-east-1:111122223333:key/" + "\ud800" * 3])
        if t == "blob":
            return r.choice([*common, "!!notbase64", "aGVsbG8", base64.b64encode(b"\0" * 7000).decode(),
                             base64.b64encode(r.randbytes(r.randint(1, 300))).decode(), "\ud800"])
        if t in ("integer", "long"):
            return r.choice([*common, 2**31, -2**31 - 1, 2**63, -2**64, 10**300, (shape.max or 0) + 1,
                             "12", Raw("1" * 400), Raw("-0"), Raw("1E400")])
        if t == "boolean":
            return r.choice([*common, "true", 1])
        if t == "timestamp":
            return r.choice([*common, 1e20, -1e20, 2**70, "2030-01-01T00:00:00Z", Raw("1" * 5000)])
        if t == "list":
            item = self.plausible(shape.member, depth + 1) if depth < 3 else "x"
            bad = self.hostile(shape.member, depth + 1) if depth < 3 else DEEP
            return r.choice([*common, [item] * ((shape.max or 10) + 1), [None], [bad], [item, bad],
                             ["x"] * 2000])
        if t == "map":
            return r.choice([
                *common, {r.choice(NASTY_TEXT): "v"}, {"k": r.choice(NASTY_TEXT)}, {"k": "v" * 70_000},
                {"k" * 70_000: "v"}, {f"k{i}": "" for i in range(3000)}, {"k": None}, {"k": {"n": "v"}},
                Pairs((("k", "a"), ("k", "b"))), {"\ud800": "\udc00"}])
        if t == "structure":
            return r.choice([*common, self.structure(shape, depth + 1, hostile=True),
                             Pairs(tuple(self.structure(shape, depth + 1).items()) * 2)])
        return r.choice(common)

    def plausible(self, shape: Shape, depth: int = 0):
        r = self.rng
        t = shape.type
        if t == "string":
            if shape.enum:
                return r.choice(shape.enum)
            lo = shape.min or 1
            return r.choice([*self.known, "alias/fuzz", "x" * lo, "arn:aws:iam::111122223333:root"])
        if t == "blob":
            return base64.b64encode(r.randbytes(r.randint(shape.min or 1, min(shape.max or 64, 64)))).decode()
        if t in ("integer", "long"):
            lo = shape.min if shape.min is not None else 1
            return r.randint(lo, shape.max if shape.max is not None else lo + 100)
        if t == "boolean":
            return r.random() < 0.5
        if t == "timestamp":
            return 1_900_000_000
        if t == "list":
            return [self.plausible(shape.member, depth + 1) for _ in range(r.randint(0, 2))] if depth < 4 else []
        if t == "map":
            return {"purpose": "fuzz"}
        if t == "structure":
            return self.structure(shape, depth + 1) if depth < 4 else {}
        return None

    def structure(self, shape: Shape, depth: int = 0, hostile: bool = False) -> dict:
        r = self.rng
        out = {}
        for name, sub in shape.members.items():
            if name in shape.required or r.random() < 0.4:
                out[name] = self.plausible(sub, depth)
        if hostile and shape.members:
            name = r.choice(sorted(shape.members))
            out[name] = self.hostile(shape.members[name], depth)
        return out

    # -- whole bodies ----------------------------------------------------------------
    def body(self, op: str) -> bytes:
        r = self.rng
        shape = OPERATIONS[op].input_shape
        roll = r.random()
        if roll < 0.08:
            return r.choice([
                b"", b"null", b"[]", b'"x"', b"{", b"\xef\xbb\xbf{}", '{"a":1}'.encode("utf-16"),
                '{}'.encode("utf-32"), b"\xff\xfe", ("[" * 100_000).encode(), b"{}" * 3, b'{"a":1}\x00',
                b'{"\\ud800":1}', b"{" * 5000, dump({"Unknown": 1}).encode(), b"\x00" * 64,
            ])
        value = self.structure(shape, hostile=roll < 0.9)
        if roll > 0.95 and value:  # the same member twice: first value plausible, second hostile
            name = r.choice(sorted(value))
            value = Pairs((*value.items(), (name, self.hostile(shape.members[name]))))
        return dump(value).encode("utf-8", "surrogatepass")
