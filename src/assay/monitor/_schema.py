"""Validate tool-call arguments against a tool's JSON schema.

Uses ``jsonschema`` when installed, else a small validator for the common subset (type,
required, properties, additionalProperties, enum, items, minimum/maximum, min/maxLength).
Tool schemas in the wild use Python type names ("dict", "float", "tuple"); they are mapped
to JSON-schema names first.
"""

from __future__ import annotations

from typing import Any, Mapping

_TYPE_ALIASES = {"dict": "object", "float": "number", "int": "integer", "tuple": "array", "list": "array",
                 "str": "string", "bool": "boolean", "any": None, "none": "null"}
_JSON_TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")
_PY = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def normalize_schema(schema: Any) -> Any:
    """A copy of ``schema`` with Python type names mapped to JSON-schema names."""
    if isinstance(schema, list):
        return [normalize_schema(s) for s in schema]
    if not isinstance(schema, Mapping):
        return schema
    out: dict[str, Any] = {}
    for k, v in schema.items():
        if k == "type":
            types = v if isinstance(v, list) else [v]
            mapped = [_TYPE_ALIASES.get(str(t).lower(), t) for t in types]
            if any(t not in _JSON_TYPES for t in mapped):
                continue  # "any" or a language type (HashMap, String...): no type constraint
            out[k] = mapped if isinstance(v, list) else mapped[0]
        elif k in ("properties", "definitions", "$defs", "patternProperties") and isinstance(v, Mapping):
            out[k] = {name: normalize_schema(s) for name, s in v.items()}
        elif k in ("items", "additionalProperties", "not", "anyOf", "oneOf", "allOf", "prefixItems"):
            out[k] = normalize_schema(v)
        else:
            out[k] = v
    return out


def validate(instance: Any, schema: Mapping[str, Any]) -> list[str]:
    """Error messages (empty when valid)."""
    schema = normalize_schema(schema)
    try:
        import jsonschema
    except ImportError:
        return _check(instance, schema, "$")
    try:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        v = cls(schema)
        return [f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}" for e in v.iter_errors(instance)][:10]
    except jsonschema.exceptions.SchemaError as exc:
        return [f"the tool schema is invalid: {exc.message}"]
    except (jsonschema.exceptions.UnknownType, jsonschema.exceptions.FormatError, TypeError, ValueError):
        return _check(instance, schema, "$")


def _type_ok(x: Any, t: str) -> bool:
    if t == "integer":
        return isinstance(x, int) and not isinstance(x, bool) or (isinstance(x, float) and x.is_integer())
    if t == "number":
        return isinstance(x, (int, float)) and not isinstance(x, bool)
    py = _PY.get(t)
    return py is None or isinstance(x, py)


def _check(x: Any, s: Any, path: str) -> list[str]:
    if not isinstance(s, Mapping):
        return []
    errs: list[str] = []
    t = s.get("type")
    if t is not None:
        types = t if isinstance(t, list) else [t]
        if not any(_type_ok(x, str(tt)) for tt in types):
            return [f"{path}: {x!r} is not of type {t}"]
    if "enum" in s and x not in s["enum"]:
        errs.append(f"{path}: {x!r} is not one of {s['enum']}")
    if "const" in s and x != s["const"]:
        errs.append(f"{path}: {x!r} is not {s['const']!r}")
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        if "minimum" in s and x < s["minimum"]:
            errs.append(f"{path}: {x} is less than {s['minimum']}")
        if "maximum" in s and x > s["maximum"]:
            errs.append(f"{path}: {x} is more than {s['maximum']}")
    if isinstance(x, str):
        if "minLength" in s and len(x) < s["minLength"]:
            errs.append(f"{path}: shorter than {s['minLength']}")
        if "maxLength" in s and len(x) > s["maxLength"]:
            errs.append(f"{path}: longer than {s['maxLength']}")
    if isinstance(x, dict):
        props = s.get("properties") or {}
        for name in s.get("required") or []:
            if name not in x:
                errs.append(f"{path}: '{name}' is a required property")
        for name, v in x.items():
            if name in props:
                errs += _check(v, props[name], f"{path}/{name}")
            elif s.get("additionalProperties") is False:
                errs.append(f"{path}: additional property '{name}' is not allowed")
            elif isinstance(s.get("additionalProperties"), Mapping):
                errs += _check(v, s["additionalProperties"], f"{path}/{name}")
    if isinstance(x, list) and isinstance(s.get("items"), Mapping):
        for i, v in enumerate(x):
            errs += _check(v, s["items"], f"{path}/{i}")
    if "anyOf" in s and isinstance(s["anyOf"], list):
        if all(_check(x, sub, path) for sub in s["anyOf"]):
            errs.append(f"{path}: matches none of anyOf")
    return errs


def validate_subset(instance: Any, schema: Mapping[str, Any]) -> list[str]:
    """The built-in validator, without jsonschema (exposed for tests)."""
    return _check(instance, normalize_schema(schema), "$")
