"""Jinja2 filters for the console's templates."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import jinja2


def when(value: Any) -> str:
    """AWS console style: ``Dec 3, 2026 09:15 UTC``."""
    if value is None or value == "":
        return "—"
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    if isinstance(value, datetime):
        value = value.astimezone(UTC)
        return f"{value:%b} {value.day}, {value:%Y %H:%M:%S} UTC"
    return str(value)


def pretty_json(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, indent=2, sort_keys=False, default=str)


def state_class(state: str | None) -> str:
    return {"Enabled": "ok", "Disabled": "off", "PendingDeletion": "warn", "PendingImport": "warn",
            "Unavailable": "off", "Creating": "warn"}.get(state or "", "off")


def install(env: jinja2.Environment) -> None:
    env.filters.update(when=when, pretty_json=pretty_json, state_class=state_class)
