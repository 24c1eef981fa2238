"""JSON Schema -> the OpenAPI-3.0 subset Gemini accepts for function parameters.

Pure; used by ``gemini_request.py``. Gemini answers 400 "Unknown name ..." for keys
outside its ``Schema`` (``additionalProperties``, ``$schema``, ``strict``, ``$ref``,
``$defs``, ``const``, ``exclusiveMinimum``, ``propertyNames``...) and "Proto field is not
repeating" for ``type: [..]`` lists (reference gemini.md §2.3). Local ``$ref``s are
inlined (recursion cut at a fixed depth), ``const`` becomes a one-value ``enum``,
``oneOf`` becomes ``anyOf``, and ``null`` alternatives become ``nullable: true``.
"""

from __future__ import annotations

from typing import Any

#: Keys of Gemini's ``Schema`` (an OpenAPI 3.0 subset); everything else is rejected
#: with 400 "Unknown name ..." (additionalProperties, $schema, strict, $ref, ...).
_SCHEMA_KEYS = frozenset({
    "type", "format", "title", "description", "nullable", "enum", "items", "maxItems",
    "minItems", "properties", "required", "minProperties", "maxProperties", "minLength",
    "maxLength", "pattern", "example", "anyOf", "propertyOrdering", "default", "minimum",
    "maximum",
})  # fmt: skip
_FORMATS = frozenset({"enum", "date-time", "int32", "int64", "float", "double"})
_MAX_SCHEMA_DEPTH = 24


def clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema -> Gemini ``Schema``: local ``$ref`` inlined, unknown keys dropped,
    ``type: [x, "null"]`` and ``anyOf: [..., {type: null}]`` turned into ``nullable``."""
    defs: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        if isinstance(schema.get(key), dict):
            defs.update(schema[key])
    return _clean(schema, defs, 0)


def _clean(schema: dict[str, Any], defs: dict[str, Any], depth: int) -> dict[str, Any]:
    if depth > _MAX_SCHEMA_DEPTH:
        return {}
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1] if ref.startswith(("#/$defs/", "#/definitions/")) else ""
        target = defs.get(name)
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return _clean({**target, **rest}, defs, depth + 1) if isinstance(target, dict) else {}
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            if len(types) < len(value):
                out["nullable"] = True
            if len(types) == 1:
                out["type"] = types[0]
            elif types:
                out["anyOf"] = [{"type": t} for t in types]
        elif key in ("anyOf", "oneOf") and isinstance(value, list):
            _variants(value, defs, depth, out)
        elif key == "const":
            out.setdefault("enum", [value])
        elif key == "properties" and isinstance(value, dict):
            out[key] = {
                name: _clean(sub, defs, depth + 1)
                for name, sub in value.items()
                if isinstance(sub, dict)
            }
        elif key == "items" and isinstance(value, dict):
            out[key] = _clean(value, defs, depth + 1)
        elif key == "format" and value not in _FORMATS:
            continue
        elif key in _SCHEMA_KEYS and key not in ("anyOf", "items", "properties"):
            out[key] = value
    return out


def _variants(value: list[Any], defs: dict[str, Any], depth: int, out: dict[str, Any]) -> None:
    variants = []
    for sub in value:
        if not isinstance(sub, dict):
            continue
        if sub.get("type") == "null":
            out["nullable"] = True
        else:
            variants.append(_clean(sub, defs, depth + 1))
    if len(variants) == 1:
        for key, val in variants[0].items():
            out.setdefault(key, val)
    elif variants:
        out["anyOf"] = variants
