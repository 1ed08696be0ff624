"""``dslrun schema``: a JSON Schema of the YAML spelling, for editor completion and validation."""

from __future__ import annotations

from typing import Any

from dslrun.core.params import FieldKind, field_kind
from dslrun.dsl.settings import ENGINES
from dslrun.operators import registry

_VALUE = {"description": "a literal, a list, or $param"}
_PARAM_REF = {"type": "string", "pattern": r"^\$[A-Za-z_]\w*$"}


def _setting(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"anyOf": [schema, _PARAM_REF], "description": description + " (run setting; --flags win over it)"}


# Run settings (dsl/settings.py), as top-level keys; compile checks the same bounds.
SETTINGS_SCHEMA = {
    "engine": _setting({"enum": list(ENGINES)}, "where the spec runs"),
    "address": _setting({"type": "string"}, "ray: the cluster to join (host:port or auto)"),
    "replicas": _setting({"type": "integer", "minimum": 1}, "ray: model replicas"),
    "gpus_per_replica": _setting({"type": "number", "minimum": 0}, "ray: GPUs per model replica"),
    "cpus_per_replica": _setting({"type": "number", "exclusiveMinimum": 0}, "ray: CPUs per model replica"),
}


def _field_schema(cls, key: str, prop: dict[str, Any]) -> dict[str, Any]:
    kind = field_kind(cls.params_type, key)
    desc = prop.get("description")
    if kind == FieldKind.EXPR:
        out: dict[str, Any] = {"type": ["string", "number", "boolean"], "description": (desc or "") +
                               " (an expression over columns)"}
    elif kind == FieldKind.STEP:
        out = {"type": "string", "description": (desc or "") + " (the name of a step)"}
    else:
        out = {k: v for k, v in prop.items() if k != "title"}
        # A `$param` may stand for any value.
        out = {"anyOf": [out, _PARAM_REF]}
        if desc:
            out["description"] = desc
    return out


def spec_schema() -> dict[str, Any]:
    steps = []
    for name in registry.names():
        cls = registry.get(name)
        assert cls is not None  # names() lists registered operators only
        ps = cls.params_type.model_json_schema()
        props: dict[str, Any] = {
            "op": {"const": name, "description": cls.summary()},
            "name": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
        }
        if cls.n_inputs != 0:
            props["input"] = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                              "description": "the input step(s)"}
        for key, prop in ps.get("properties", {}).items():
            props[key] = _field_schema(cls, key, prop)
        required = ["op", *ps.get("required", [])] + (["input"] if cls.n_inputs else [])
        steps.append({"type": "object", "title": name, "properties": props, "required": required,
                      "additionalProperties": False, "$defs": ps.get("$defs", {})} if ps.get("$defs") else
                     {"type": "object", "title": name, "properties": props, "required": required,
                      "additionalProperties": False})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "dslrun selection spec (YAML form)",
        "type": "object",
        "properties": {
            "params": {"type": "object", "description": "spec parameters and their defaults (override with --set)",
                       "additionalProperties": {"type": ["string", "number", "boolean", "array", "object", "null"]}},
            **SETTINGS_SCHEMA,
            "steps": {"type": "array", "items": {"oneOf": steps}},
        },
        "required": ["steps"],
        "additionalProperties": False,
    }
