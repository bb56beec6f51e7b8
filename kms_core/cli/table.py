"""``--output table``: the AWS CLI v1 table layout (``awscli/formatter.py`` TableFormatter and
``awscli/table.py``), without colours.  Tests compare it with awscli's output."""
from __future__ import annotations

import shutil
import unicodedata


def _text_length(text) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WFA" else 1 for c in str(text))


def _terminal_width(stream, default: int = 80) -> int:
    try:
        if stream.isatty():
            return shutil.get_terminal_size((default, 24)).columns
    except (AttributeError, ValueError, OSError):
        pass
    return default


def _center(text, length, left="|", right="|") -> str:
    n = _text_length(text)
    start = (length // 2) - (n // 2) - 1
    so_far = _text_length(left) + start + n
    return left + " " * start + text + " " * (length - _text_length(right) - so_far) + right


def _align_left(text, length, left="|", right="|", left_padding=2) -> str:
    n = _text_length(text)
    padding = left_padding if length - (n + left_padding + len(left) + len(right)) >= 0 else 0
    so_far = len(left) + padding + n
    return left + " " * padding + text + " " * (length - so_far - len(right)) + right


class _Section:
    def __init__(self, title="", indent_level=0):
        self.title = title
        self.headers: list = []
        self.rows: list = []
        self.indent_level = indent_level
        self._num_cols = None
        self._max_widths: list[int] = []

    def column_widths(self, padding=0, max_width=None) -> list[int]:
        unscaled = [w + padding for w in self._max_widths]
        if max_width is None or not unscaled:
            return unscaled
        scale = max_width / float(sum(unscaled))
        scaled = [round(scale * w) for w in unscaled]
        off_by = sum(scaled) - max_width
        while off_by != 0:
            order = range(len(scaled)) if off_by > 0 else reversed(range(len(scaled)))
            for i in order:
                if off_by > 0:
                    scaled[i] -= 1
                    off_by -= 1
                else:
                    scaled[i] += 1
                    off_by += 1
                if off_by == 0:
                    break
        return scaled

    def total_width(self, padding=0, with_border=False, outer_padding=0) -> int:
        total = sum(w + padding for w in self.column_widths())
        if with_border:
            total += 2
        total += 2 * outer_padding
        return max(_text_length(self.title) + 2 + 2 * outer_padding, total)

    def add_header(self, headers) -> None:
        self._update(headers)
        if self._num_cols is None:
            self._num_cols = len(headers)
        self.headers = headers

    def add_row(self, row) -> None:
        if self._num_cols is None:
            self._num_cols = len(row)
        row = [str(r) for r in row]
        self.rows.append(row)
        self._update(row)

    def _update(self, row) -> None:
        if not self._max_widths:
            self._max_widths = [_text_length(el) for el in row]
        else:
            for i, el in enumerate(row):
                self._max_widths[i] = max(_text_length(el), self._max_widths[i])


class _Indented:
    def __init__(self, stream, level):
        self._stream, self._level = stream, level

    def write(self, text):
        self._stream.write("|" * self._level)
        if text.endswith("\n"):
            self._stream.write(text[:-1] + "|" * self._level + "\n")
        else:
            self._stream.write(text)


class _MultiTable:
    def __init__(self, terminal_width: int):
        self.sections: list[_Section] = []
        self.current: _Section = _Section(None, 0)  # replaced by the first new_section()
        self.terminal_width = terminal_width

    def new_section(self, title, indent_level=0):
        self.current = _Section(title, indent_level)
        self.sections.append(self.current)

    def render(self, stream) -> None:
        width = self._max_width()
        if width > self.terminal_width:
            for i, s in enumerate(self.sections):  # too wide: one "header | value" row per column
                if len(s.rows) == 1 and s.headers:
                    vertical = _Section(s.title, s.indent_level)
                    for header, element in zip(s.headers, s.rows[0], strict=False):
                        vertical.add_row([header, element])
                    self.sections[i] = vertical
            width = self._max_width()
        stream.write("-" * width + "\n")
        for s in self.sections:
            out = _Indented(stream, s.indent_level)
            w = width - s.indent_level * 2
            if s.title:
                out.write(_center(s.title, w) + "\n")
                if not s.headers and not s.rows:
                    out.write("+%s+" % ("-" * (w - 2)) + "\n")
            if s.headers:
                widths = s.column_widths(padding=4, max_width=w)
                line = "".join(_center(h, cw, "|" if i == 0 else "", "|")
                               for i, (cw, h) in enumerate(zip(widths, s.headers, strict=False)))
                self._line_break(out, widths)
                out.write(line + "\n")
            if s.rows:
                widths = s.column_widths(padding=4, max_width=w)
                if not widths:
                    continue
                self._line_break(out, widths)
                for row in s.rows:
                    out.write("".join(_align_left(el, cw, "|" if i == 0 else "", "|")
                                      for i, (cw, el) in enumerate(zip(widths, row, strict=False))) + "\n")
                self._line_break(out, widths)

    @staticmethod
    def _line_break(stream, widths) -> None:
        parts = ["+%s+" % ("-" * (widths[0] - 2))] + ["%s+" % ("-" * (w - 1)) for w in widths[1:]]
        stream.write("".join(parts) + "\n")

    def _max_width(self) -> int:
        return max(s.total_width(padding=4, with_border=True, outer_padding=s.indent_level) for s in self.sections)


def _scalar(x) -> bool:
    return not isinstance(x, (list, dict))


def _group(d: dict):
    headers = sorted(k for k in d if _scalar(d[k]))
    more = sorted(k for k in d if not _scalar(d[k]))
    return headers, more


def _build(table: _MultiTable, title, current, indent_level=0) -> bool:
    if not current:
        return False
    if title is not None:
        table.new_section(title, indent_level=indent_level)
    if isinstance(current, list):
        if isinstance(current[0], dict):
            _build_rows_of_dicts(table, title, current, indent_level)
        else:
            for item in current:
                if _scalar(item):
                    table.current.add_row([item])
                elif all(_scalar(el) for el in item):
                    table.current.add_row(item)
                else:
                    _build(table, None, item)
    if isinstance(current, dict):
        headers, more = _group(current)
        if len(headers) == 1:
            table.current.add_row([headers[0], current[headers[0]]])
        elif headers:
            table.current.add_header(headers)
            table.current.add_row([current[k] for k in headers])
        for key in more:
            _build(table, key, current[key], indent_level + 1)
    return True


def _build_rows_of_dicts(table: _MultiTable, title, current: list, indent_level: int) -> None:
    headers_seen: set = set()
    more_seen: set = set()
    for item in current:
        h, m = _group(item)
        headers_seen.update(h)
        more_seen.update(m)
    headers, more = sorted(headers_seen), sorted(more_seen)
    table.current.add_header(headers)
    for i, element in enumerate(current):
        if i and more:
            table.new_section(title, indent_level=indent_level)
            table.current.add_header(headers)
        table.current.add_row([element.get(h, "") for h in headers])
        for key in more:
            if key in element:
                _build(table, key, element[key], indent_level + 1)


def format_table(title: str, data, stream) -> None:
    table = _MultiTable(_terminal_width(stream))
    if _build(table, title, data):
        table.render(stream)
