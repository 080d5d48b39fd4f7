"""The repository's v1 OpenAPI document (services/gateway/openapi/v1.yaml) and how to compare
it with the gateway's own document: schemas are reduced to what a client relies on (types,
formats, enums, properties, required, nullability), dropping titles, defaults and limits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

DOCUMENT = Path(__file__).parents[1] / "openapi" / "v1.yaml"
FORMATS = ("uuid", "email", "date-time")
METHODS = ("get", "put", "post", "patch", "delete")


def load() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text())
    return document


def _lookup(root: dict[str, Any], ref: str) -> Any:
    node: Any = root
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _deref(root: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        node = _lookup(root, node["$ref"])
    return node


def shape(root: dict[str, Any], schema: Any) -> dict[str, Any]:
    schema = _deref(root, schema)
    if "anyOf" in schema:
        options = [shape(root, s) for s in schema["anyOf"]]
        real = [o for o in options if o != {"type": "null"}]
        if len(real) == 1:
            out = dict(real[0])
        else:
            out = {"anyOf": sorted(json.dumps(o, sort_keys=True) for o in real)}
        if len(real) < len(options):
            out["nullable"] = True
        return out
    out = {}
    kind = schema.get("type")
    if isinstance(kind, list):
        if "null" in kind:
            out["nullable"] = True
        rest = [k for k in kind if k != "null"]
        kind = rest[0] if len(rest) == 1 else rest
    if kind == "null":
        return {"type": "null"}
    if kind:
        out["type"] = kind
    if "const" in schema:
        out["enum"] = [schema["const"]]
    if "enum" in schema:
        out["enum"] = sorted(schema["enum"])
    if schema.get("format") in FORMATS:
        out["format"] = schema["format"]
    if "properties" in schema:
        out["properties"] = {k: shape(root, v) for k, v in schema["properties"].items()}
        out["required"] = sorted(schema.get("required", []))
    if "items" in schema:
        out["items"] = shape(root, schema["items"])
    return out


def _content(root: dict[str, Any], node: Any) -> dict[str, Any]:
    node = _deref(root, node) or {}
    result = {}
    for media, spec in (node.get("content") or {}).items():
        schema = shape(root, spec.get("schema", {}))
        if schema or media != "application/json":  # FastAPI's "any JSON" default: no body
            result[media] = schema
    return result


def operations(root: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`METHOD path` -> parameters, request body and responses, reduced."""
    result = {}
    for path, item in root["paths"].items():
        shared = item.get("parameters", [])
        for method in METHODS:
            if method not in item:
                continue
            op = item[method]
            parameters = {}
            for p in [*shared, *op.get("parameters", [])]:
                p = _deref(root, p)
                parameters[f"{p['in']}:{p['name']}"] = {
                    "required": bool(p.get("required")),
                    "schema": shape(root, p["schema"]),
                }
            result[f"{method.upper()} {path}"] = {
                "parameters": parameters,
                "body": _content(root, op.get("requestBody")),
                "responses": {
                    status: _content(root, response) for status, response in op["responses"].items()
                },
            }
    return result


def validate(root: dict[str, Any], schema_name: str, data: Any, *, array: bool = False) -> None:
    """A live answer against the document's schema (jsonschema, draft 2020-12)."""
    ref = {"$ref": f"#/components/schemas/{schema_name}"}
    schema = {
        **({"type": "array", "items": ref} if array else ref),
        "components": root["components"],
    }
    jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(data)
