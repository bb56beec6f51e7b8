"""``--generate-cli-skeleton``: a JSON document of an operation's input (or output) shape,
as botocore's ArgumentGenerator builds it for the AWS CLI."""
from __future__ import annotations


def skeleton(shape, use_member_names: bool = False):
    if shape is None:
        return {}
    return _generate(shape, [], "", use_member_names)


def _generate(shape, stack: list, name: str, names: bool):
    stack.append(shape.name)
    try:
        kind = shape.type
        if kind == "structure":
            if stack.count(shape.name) > 1:
                return {}
            return {m: _generate(s, stack, m, names) for m, s in shape.members.items()}
        if kind == "list":
            return [_generate(shape.member, stack, shape.member.name if names else "", names)]
        if kind == "map":
            return {"KeyName": _generate(shape.value, stack, "", names)}
        if kind == "string":
            if names:
                return name
            # botocore picks a random enum value; the first one keeps output stable.
            return shape.enum[0] if shape.enum else ""
        if kind in ("integer", "long"):
            return 0
        if kind in ("float", "double"):
            return 0.0
        if kind == "boolean":
            return True
        if kind == "timestamp":
            return "1970-01-01T00:00:00"
        return None  # blobs: botocore leaves them out of the skeleton's values
    finally:
        stack.pop()
