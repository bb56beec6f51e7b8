"""The AWS CLI's shorthand syntax: ``purpose=test,team=a`` or ``TagKey=a,TagValue=b``.

A port of the grammar in awscli 1.45's ``awscli/shorthand.py`` (same token
rules, quoting, ``\\,`` escapes, ``[...]`` lists, ``{...}`` hashes and
``key@=file://...`` values) so that every value the AWS CLI accepts parses to
the same thing here; tests compare the two on generated inputs.  awscli itself
is not a runtime dependency because it pins botocore to one exact release.
"""
from __future__ import annotations

import re
import string

from .paramfiles import LOCAL_PREFIXES, get_paramfile

_EOF = object()
_KEY_CHARS = frozenset(string.ascii_letters + string.digits + "-_.#/:")
_START_WORD = r"\!\#-&\(-\+\--\<\>-Z\\\\-z\u007c-\uffff"
_FIRST_FOLLOW_CHARS = r"\s\!\#-&\(-\+\--\\\\\^-\|~-\uffff"
_SECOND_FOLLOW_CHARS = r"\s\!\#-&\(-\+\--\<\>-\uffff"
_ESCAPED_COMMA = "(\\\\,)"


class _NamedRegex:
    def __init__(self, name: str, pattern: str):
        self.name = name
        self.regex = re.compile(pattern, re.UNICODE)


_SINGLE_QUOTED = _NamedRegex("singled quoted", r"\'(?:\\\'|[^\'])*\'")
_DOUBLE_QUOTED = _NamedRegex("double quoted", r'"(?:\\"|[^"])*"')
_FIRST_VALUE = _NamedRegex(
    "first", f"({_ESCAPED_COMMA}|[{_START_WORD}])({_ESCAPED_COMMA}|[{_FIRST_FOLLOW_CHARS}])*"
)
_SECOND_VALUE = _NamedRegex(
    "second", f"({_ESCAPED_COMMA}|[{_START_WORD}])({_ESCAPED_COMMA}|[{_SECOND_FOLLOW_CHARS}])*"
)


class ShorthandParseError(Exception):
    def __init__(self, value: str, index: int, message: str):
        self.value = value
        self.index = index
        super().__init__(message)

    def _error_location(self) -> str:
        consumed, remaining, num_spaces = self.value, "", self.index
        if "\n" in self.value[: self.index]:
            num_spaces = self.index - self.value[: self.index].rindex("\n") - 1
        if "\n" in self.value[self.index :]:
            next_newline = self.index + self.value[self.index :].index("\n")
            consumed, remaining = self.value[:next_newline], self.value[next_newline:]
        return "{}\n{}{}".format(consumed, " " * num_spaces + "^", remaining)


class ShorthandParseSyntaxError(ShorthandParseError):
    def __init__(self, value: str, expected: str, actual: str, index: int):
        self.expected, self.actual = expected, actual
        super().__init__(value, index, "")
        # awscli 1.45 forgets the f-prefix on the location line; we print it.
        self.args = (f"Expected: '{expected}', received: '{actual}' for input:\n{self._error_location()}",)


class DuplicateKeyInObjectError(ShorthandParseError):
    def __init__(self, key: str, value: str, index: int):
        super().__init__(value, index, "")
        self.args = (
            f'Second instance of key "{key}" encountered for input:\n{self._error_location()}\n'
            'This is often because there is a preceding "," instead of a space.',
        )


class ShorthandParser:
    """Parses one shorthand value into dicts, lists and strings (no model needed)."""

    def parse(self, value: str):
        self._input = value
        self._index = 0
        self._resolve_files = False
        return self._parameter()

    def _parameter(self):
        params = {}
        key, val = self._keyval()
        params[key] = val
        last_index = self._index
        while self._index < len(self._input):
            self._expect(",", consume_whitespace=True)
            key, val = self._keyval()
            if key in params:
                raise DuplicateKeyInObjectError(key, self._input, last_index + 1)
            params[key] = val
            last_index = self._index
        return params

    def _at_sign(self) -> None:
        self._resolve_files = False
        try:
            self._expect("@", consume_whitespace=True)
            self._resolve_files = True
        except ShorthandParseSyntaxError:
            pass

    def _keyval(self):
        key = self._key()
        self._at_sign()
        self._expect("=", consume_whitespace=True)
        return key, self._values()

    def _key(self) -> str:
        start = self._index
        while not self._at_eof() and self._current() in _KEY_CHARS:
            self._index += 1
        return self._input[start : self._index]

    def _values(self):
        if self._at_eof():
            return ""
        if self._current() == "[":
            return self._explicit_list()
        if self._current() == "{":
            return self._hash_literal()
        return self._csv_value()

    def _csv_value(self):
        first = self._first_value()
        self._consume_whitespace()
        if self._at_eof() or self._input[self._index] != ",":
            return first
        self._expect(",", consume_whitespace=True)
        values = [first]
        while True:
            try:
                current = self._second_value()
                self._consume_whitespace()
                if self._at_eof():
                    values.append(current)
                    break
                self._expect(",", consume_whitespace=True)
                values.append(current)
            except ShorthandParseSyntaxError:
                if self._at_eof():
                    raise
                self._backtrack_to(",")
                break
        return first if len(values) == 1 else values

    def _value(self) -> str:
        match = _FIRST_VALUE.regex.match(self._input[self._index :])
        if match is None:
            return ""
        return self._maybe_file(self._consume(match).replace("\\,", ",").rstrip())

    def _explicit_list(self):
        self._expect("[", consume_whitespace=True)
        values = []
        while self._current() != "]":
            values.append(self._explicit_values())
            self._consume_whitespace()
            if self._current() != "]":
                self._expect(",")
                self._consume_whitespace()
        self._expect("]")
        return values

    def _explicit_values(self):
        if self._current() == "[":
            return self._explicit_list()
        if self._current() == "{":
            return self._hash_literal()
        return self._first_value()

    def _hash_literal(self):
        self._expect("{", consume_whitespace=True)
        keyvals = {}
        while self._current() != "}":
            key = self._key()
            self._at_sign()
            self._expect("=", consume_whitespace=True)
            val = self._explicit_values()
            self._consume_whitespace()
            if self._current() != "}":
                self._expect(",")
                self._consume_whitespace()
            keyvals[key] = val
        self._expect("}")
        return keyvals

    def _first_value(self):
        if self._current() == "'":
            return self._quoted(_SINGLE_QUOTED, "'")
        if self._current() == '"':
            return self._quoted(_DOUBLE_QUOTED, '"')
        return self._value()

    def _second_value(self):
        if self._current() == "'":
            return self._quoted(_SINGLE_QUOTED, "'")
        if self._current() == '"':
            return self._quoted(_DOUBLE_QUOTED, '"')
        return self._maybe_file(self._must_consume(_SECOND_VALUE).replace("\\,", ",").rstrip())

    def _quoted(self, regex: _NamedRegex, quote: str) -> str:
        value = self._must_consume(regex)[1:-1]
        value = value.replace("\\" + quote, quote).replace("\\\\", "\\")
        return self._maybe_file(value)

    def _maybe_file(self, value: str):
        if self._resolve_files:
            loaded = get_paramfile(value, LOCAL_PREFIXES)
            if loaded is not None:
                return loaded
        return value

    def _expect(self, char: str, consume_whitespace: bool = False) -> None:
        if consume_whitespace:
            self._consume_whitespace()
        if self._index >= len(self._input):
            raise ShorthandParseSyntaxError(self._input, char, "EOF", self._index)
        actual = self._input[self._index]
        if actual != char:
            raise ShorthandParseSyntaxError(self._input, char, actual, self._index)
        self._index += 1
        if consume_whitespace:
            self._consume_whitespace()

    def _must_consume(self, regex: _NamedRegex) -> str:
        match = regex.regex.match(self._input[self._index :])
        if match is None:
            raise ShorthandParseSyntaxError(self._input, f"<{regex.name}>", "<none>", self._index)
        return self._consume(match)

    def _consume(self, match: re.Match) -> str:
        start, end = match.span()
        value = self._input[self._index + start : self._index + end]
        self._index += end - start
        return value

    def _current(self):
        return self._input[self._index] if self._index < len(self._input) else _EOF

    def _at_eof(self) -> bool:
        return self._index >= len(self._input)

    def _backtrack_to(self, char: str) -> None:
        while self._index >= 0 and self._input[self._index] != char:
            self._index -= 1

    def _consume_whitespace(self) -> None:
        while self._current() is not _EOF and self._current() in string.whitespace:
            self._index += 1


def coerce(value, shape) -> None:
    """Fix up a parsed value in place using the model, as awscli's BackCompatVisitor does:
    wrap a lone value given for a list, and turn strings into ints, floats and booleans."""
    _visit({}, shape, "", value)


def _visit(parent, shape, name, value) -> None:
    kind = shape.type
    if kind == "structure":
        if isinstance(value, dict):
            for member_name, member_shape in shape.members.items():
                _visit(value, member_shape, member_name, value.get(member_name))
    elif kind == "list":
        if not isinstance(value, list):
            if value is not None:
                parent[name] = [value]
        else:
            for i, element in enumerate(value):
                _visit(value, shape.member, i, element)
    elif kind == "map":
        if isinstance(value, dict):
            for k, v in value.items():
                _visit(value, shape.value, k, v)
    elif value is not None:
        _coerce_scalar(parent, kind, name, value)


def _coerce_scalar(parent, kind: str, name, value) -> None:
    if kind in ("integer", "long"):
        parent[name] = int(value)
    elif kind in ("double", "float"):
        parent[name] = float(value)
    elif kind == "boolean":
        if value.lower() == "true":
            parent[name] = True
        elif value.lower() == "false":
            parent[name] = False
