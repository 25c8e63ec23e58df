"""JSON Patch (RFC 6902) from the difference of two JSON documents.

The webhook mutates a copy of the pod and sends the difference. Deriving the patch from the
result (instead of hand-writing operations) makes re-mutation yield an empty patch by construction
and keeps path escaping (RFC 6901: ``~`` → ``~0``, ``/`` → ``~1``) in one place.
"""

from __future__ import annotations

from typing import Any

JsonPatch = list[dict[str, Any]]


def escape(token: str) -> str:
    """Escape one JSON Pointer reference token."""
    return token.replace("~", "~0").replace("/", "~1")


def diff(old: Any, new: Any, path: str = "") -> JsonPatch:
    """Operations that turn ``old`` into ``new``; empty when they are equal."""
    if type(old) is not type(new):
        return [{"op": "replace", "path": path, "value": new}]
    if isinstance(old, dict):
        ops: JsonPatch = []
        for key in old:
            if key not in new:
                ops.append({"op": "remove", "path": f"{path}/{escape(key)}"})
        for key, value in new.items():
            child = f"{path}/{escape(key)}"
            if key not in old:
                ops.append({"op": "add", "path": child, "value": value})
            else:
                ops.extend(diff(old[key], value, child))
        return ops
    if isinstance(old, list):
        if len(old) <= len(new) and all(a == b for a, b in zip(old, new, strict=False)):
            # Appending is the common case (a volume, a toleration): emit "add … /-"-free ops with
            # explicit indices so the patch stays valid if the API server reorders nothing.
            return [
                {"op": "add", "path": f"{path}/{index}", "value": new[index]}
                for index in range(len(old), len(new))
            ]
        if len(old) == len(new):
            return [
                op
                for i, (a, b) in enumerate(zip(old, new, strict=True))
                for op in diff(a, b, f"{path}/{i}")
            ]
        return [{"op": "replace", "path": path, "value": new}]
    if old != new:
        return [{"op": "replace", "path": path, "value": new}]
    return []
