"""Automatic pagination with ``--max-items``/``--starting-token``/``--page-size``.

Same semantics and token format as botocore's ``PageIterator`` (which the AWS
CLI uses): a ``NextToken`` is base64 of JSON ``{"Marker": ..., "boto_truncate_amount": n}``,
so tokens printed by ``aws kms list-keys --max-items 1`` work with ``kms`` and
back.  Written here because importing ``botocore.paginate`` costs ~0.1 s and
KMS's paginators all have one token, one result key and ``Truncated``.
"""
from __future__ import annotations

import base64
import json


class PaginationError(Exception):
    pass


def encode_token(token: dict) -> str:
    return base64.b64encode(json.dumps(token).encode("utf-8")).decode("utf-8")


def decode_token(token: str, input_tokens: list[str]) -> tuple[dict, int]:
    """(input-token values, items to skip on the first page); accepts botocore's old ``x___n`` form too."""
    try:
        decoded = json.loads(base64.b64decode(token.encode("utf-8"), validate=True).decode("utf-8"))
        if not isinstance(decoded, dict):
            raise ValueError
        decoded.pop("boto_encoded_keys", None)
        skip = decoded.pop("boto_truncate_amount", 0)
        if not isinstance(skip, int) or skip < 0 or set(decoded) - set(input_tokens):
            raise ValueError
        return decoded, skip
    except (ValueError, TypeError, UnicodeDecodeError):
        parts = token.split("___")
        skip = 0
        if len(parts) == len(input_tokens) + 1:
            try:
                skip = int(parts.pop())
            except ValueError:
                parts = [token]
        values = [None if p == "None" else p for p in parts]
        return dict(zip(input_tokens, values, strict=False)), skip


def _as_list(value) -> list:
    return list(value) if isinstance(value, list) else [value]


class Pages:
    """Lazily calls ``method`` page by page; iterate for pages, or ``build_full_result()``."""

    def __init__(self, method, config: dict, params: dict, max_items=None, page_size=None, starting_token=None):
        self._method = method
        self._input_tokens = _as_list(config["input_token"])
        self._output_tokens = _as_list(config["output_token"])
        self._more_results = config.get("more_results")
        self.result_keys = _as_list(config["result_key"])
        self._limit_key = config.get("limit_key")
        self._params = dict(params)
        self._max_items = max_items
        self._page_size = page_size
        self._starting_token = starting_token
        self.resume_token: str | None = None

    def __iter__(self):
        kwargs = dict(self._params)
        skip = 0
        if self._starting_token is not None:
            start, skip = decode_token(self._starting_token, self._input_tokens)
            self._inject(kwargs, start)
        if self._page_size is not None and self._limit_key:
            kwargs[self._limit_key] = self._page_size
        primary = self.result_keys[0]
        total = 0
        previous = None
        current_token = {k: kwargs.get(k) for k in self._input_tokens}
        first = True
        while True:
            page = self._method(**kwargs)
            page = dict(page)
            page.pop("ResponseMetadata", None)
            starting_truncation = 0
            if first and skip:
                starting_truncation = skip
                page[primary] = list(page.get(primary) or [])[skip:]
            first = False
            items = page.get(primary) or []
            over = total + len(items) - self._max_items if self._max_items is not None else 0
            if over > 0:
                keep = len(items) - over
                page[primary] = items[:keep]
                token = dict(current_token)
                token["boto_truncate_amount"] = keep + starting_truncation
                self.resume_token = encode_token(token)
                yield page
                return
            yield page
            total += len(items)
            next_token = self._next_token(page)
            if not next_token or all(v is None for v in next_token.values()):
                return
            if self._max_items is not None and total == self._max_items:
                self.resume_token = encode_token(next_token)
                return
            if previous is not None and previous == next_token:
                raise PaginationError(f"The same next token was received twice: {next_token}")
            self._inject(kwargs, next_token)
            current_token = next_token
            previous = next_token

    @staticmethod
    def _inject(kwargs: dict, token: dict) -> None:
        for name, value in token.items():
            if value is not None and value != "None":
                kwargs[name] = value
            else:
                kwargs.pop(name, None)

    def _next_token(self, page: dict) -> dict:
        if self._more_results is not None and not page.get(self._more_results):
            return {}
        return {inp: (page.get(out) or None) for out, inp in zip(self._output_tokens, self._input_tokens, strict=False)}

    def build_full_result(self) -> dict:
        result: dict = {}
        for page in self:
            for key in self.result_keys:
                value = page.get(key)
                if value is None:
                    continue
                if key not in result:
                    result[key] = list(value) if isinstance(value, list) else value
                elif isinstance(value, list):
                    result[key].extend(value)
        if self.resume_token is not None:
            result["NextToken"] = self.resume_token
        return result

    def strip_tokens(self, page: dict) -> dict:
        """A page as the AWS CLI's text output shows it: only the result keys."""
        return {k: page[k] for k in self.result_keys if k in page}
