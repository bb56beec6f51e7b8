"""Printing responses as AWS CLI v1 does (``awscli/formatter.py`` and ``awscli/text.py``).

AWS CLI v1 leaves blobs as the base64 text and timestamps as the number that
came over the wire (``cli_timestamp_format = wire``), so a response is first
put in that form; ``--query`` and the formatters then see what ``aws`` sees.
"""
from __future__ import annotations

import base64
import datetime
import json


def to_wire(value):
    """bytes -> base64 text, datetime -> seconds since the epoch (a float), recursively."""
    if isinstance(value, dict):
        return {k: to_wire(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, (list, tuple)):
        return [to_wire(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        # Rounded to microseconds: what a datetime holds; avoids float noise in the last digit.
        return round(value.timestamp(), 6)
    return value


def format_json(data, stream) -> None:
    # awscli prints nothing for an empty response body but does print other falsy values.
    if data != {}:
        json.dump(data, stream, indent=4, ensure_ascii=False)
        stream.write("\n")


# --- text: a line per object, tab-separated scalars, identifiers in upper case --------------

def format_text(data, stream) -> None:
    _format_text(data, stream)


def _format_text(item, stream, identifier=None, scalar_keys=None) -> None:
    if isinstance(item, dict):
        _format_dict(scalar_keys, item, identifier, stream)
    elif isinstance(item, list):
        _format_list(item, identifier, stream)
    else:
        stream.write(str(item))
        stream.write("\n")


def _format_list(item, identifier, stream) -> None:
    if not item:
        return
    if any(isinstance(el, dict) for el in item):
        all_keys = _all_scalar_keys(item)
        for element in item:
            _format_text(element, stream=stream, identifier=identifier, scalar_keys=all_keys)
    elif any(isinstance(el, list) for el in item):
        scalars = [el for el in item if not isinstance(el, (list, dict))]
        non_scalars = [el for el in item if isinstance(el, (list, dict))]
        if scalars:
            _format_scalar_list(scalars, identifier, stream)
        for non_scalar in non_scalars:
            _format_text(non_scalar, stream=stream, identifier=identifier)
    else:
        _format_scalar_list(item, identifier, stream)


def _format_scalar_list(elements, identifier, stream) -> None:
    if identifier is not None:
        for item in elements:
            stream.write(f"{identifier.upper()}\t{item}\n")
    else:
        stream.write("\t".join(str(item) for item in elements))
        stream.write("\n")


def _format_dict(scalar_keys, item, identifier, stream) -> None:
    scalars, non_scalars = _partition_dict(item, scalar_keys)
    if scalars:
        if identifier is not None:
            scalars.insert(0, identifier.upper())
        stream.write("\t".join(scalars))
        stream.write("\n")
    for new_identifier, non_scalar in non_scalars:
        _format_text(non_scalar, stream=stream, identifier=new_identifier)


def _all_scalar_keys(list_of_dicts) -> list:
    keys: set[str] = set()
    for item in list_of_dicts:
        if isinstance(item, dict):
            keys.update(k for k, v in item.items() if not isinstance(v, (dict, list)))
    return sorted(keys)


def _partition_dict(item, scalar_keys):
    scalar, non_scalar = [], []
    if scalar_keys is None:
        for key, value in sorted(item.items()):
            if isinstance(value, (dict, list)):
                non_scalar.append((key, value))
            else:
                scalar.append(str(value))
    else:
        scalar = [str(item.get(key, "")) for key in scalar_keys]
        non_scalar = [(key, item[key]) for key in sorted(set(item) - set(scalar_keys))]
    return scalar, non_scalar
