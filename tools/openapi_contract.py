"""openapi.yaml, the API's published contract: its routes, and whether an HTTP answer conforms to it.

Shared by the contract tests (the template's routes equal the contract's; every e2e answer conforms), by
``make build`` (the JSON copy OpenApiFunction serves) and by whoever fuzzes the API against it.

    PYTHONPATH=tools .venv/bin/python tools/openapi_contract.py --json > openapi.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT / "openapi.yaml"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
NONE, ADMIN = "none", "admin"


def load(path: Path = CONTRACT) -> dict[str, Any]:
    """The contract as plain JSON data (YAML 1.2's JSON subset: no tags, no dates)."""
    import yaml

    class _JsonLoader(yaml.SafeLoader):
        """SafeLoader without the timestamp resolver: a date stays the string it is in JSON."""

    _JsonLoader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_JsonLoader)  # noqa: S506 (a SafeLoader)


@cache
def contract() -> dict[str, Any]:
    return load()


def to_json(document: Mapping[str, Any]) -> str:
    """The served form: compact, keys in the contract's order, UTF-8."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


# --------------------------------------------------------------------------- routes


def _auth(security: Any) -> str:
    """``none`` when the operation may be called without credentials (no requirement, or an empty one)."""
    if not security or any(requirement == {} for requirement in security):
        return NONE
    return ADMIN


def contract_routes(document: Mapping[str, Any]) -> set[tuple[str, str, str]]:
    """``{(METHOD, path, none|admin)}`` of every operation."""
    default = document.get("security")
    return {
        (method.upper(), path, _auth(operation.get("security", default)))
        for path, item in (document.get("paths") or {}).items()
        for method, operation in item.items()
        if method in METHODS
    }


def template_routes(template: Mapping[str, Any]) -> set[tuple[str, str, str]]:
    """``{(METHOD, path, none|admin)}`` of every HttpApi event (the API's DefaultAuthorizer unless NONE)."""
    from local_api import read_routes

    routes, _ = read_routes(template)
    return {(route.method, route.path, NONE if route.authorizer is None else ADMIN) for route in routes}


# --------------------------------------------------------------------------- answers


def _validator(schema: Any, document: Mapping[str, Any]) -> Any:
    """A JSON Schema 2020-12 validator (OpenAPI 3.1's dialect) whose ``#/components/...`` refs resolve."""
    from jsonschema import Draft202012Validator

    root = {"components": document.get("components", {}), **schema} if isinstance(schema, dict) else schema
    return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _resolve(node: Any, document: Mapping[str, Any]) -> Any:
    """A ``{"$ref": "#/..."}`` object (response, header) replaced by what it points at."""
    while isinstance(node, dict) and isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/"):
        target: Any = document
        for part in node["$ref"][2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def operation(document: Mapping[str, Any], method: str, path: str) -> dict[str, Any] | None:
    """The contract's operation for ``METHOD path`` (a template path: no parameters in this API)."""
    item = (document.get("paths") or {}).get(path)
    return item.get(method.lower()) if isinstance(item, dict) else None


def _schema_problems(schema: Any, instance: Any, document: Mapping[str, Any], what: str) -> list[str]:
    from jsonschema.exceptions import best_match

    errors = sorted(_validator(schema, document).iter_errors(instance), key=lambda error: list(error.path))
    problems = []
    for error in errors[:5]:
        # Into a oneOf/anyOf: the most relevant sub-error says more than "not valid under any of the given schemas".
        error = best_match([error])
        where = "/".join(str(part) for part in error.absolute_path) or "(root)"
        message = error.message[:300]
        if error.context:  # still a oneOf/anyOf: why each alternative failed
            branches: dict[Any, list[Any]] = {}
            for sub in error.context:
                branches.setdefault(sub.relative_schema_path[0], []).append(sub)
            message = "; ".join(
                f"alternative {index}: {best_match(subs).message[:160]}" for index, subs in sorted(branches.items())
            )
        problems.append(f"{what} at {where}: {message}")
    return problems


def response_problems(
    method: str,
    path: str,
    status: int,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes | str | None,
    document: Mapping[str, Any] | None = None,
) -> list[str]:
    """What in this answer the contract does not allow (empty: it conforms). ``path`` is the route's path."""
    document = contract() if document is None else document
    found = operation(document, method, path)
    if found is None:
        return [f"{method.upper()} {path} is not in the contract"]
    responses = found.get("responses") or {}
    spec = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX") or responses.get("default")
    if spec is None:
        return [f"{method.upper()} {path} answered {status}, not a documented status ({', '.join(responses)})"]
    spec = _resolve(spec, document)
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    received = {str(name).lower(): str(value) for name, value in pairs}
    label = f"{method.upper()} {path} {status}"
    problems = []
    for name, header in (spec.get("headers") or {}).items():
        header = _resolve(header, document)
        value = received.get(name.lower())
        if value is None:
            if header.get("required"):
                problems.append(f"{label}: header {name} missing")
            continue
        if "schema" in header:
            problems += _schema_problems(header["schema"], value, document, f"{label} header {name}")
    content = spec.get("content") or {}
    raw = body.encode() if isinstance(body, str) else (body or b"")
    if not content:
        if raw:
            problems.append(f"{label}: a body where the contract documents none")
        return problems
    media_type = received.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in content:
        return [*problems, f"{label}: content-type {media_type or '(none)'} is not one of {', '.join(content)}"]
    schema = content[media_type].get("schema")
    if media_type == "application/json" or media_type.endswith("+json"):
        try:
            instance = json.loads(raw)
        except ValueError:
            return [*problems, f"{label}: the {media_type} body is not JSON"]
    else:
        instance = raw.decode("utf-8", "replace")
    if schema is not None:
        problems += _schema_problems(schema, instance, document, f"{label} body")
    return problems


def gateway_route(event: Any) -> tuple[str, str] | None:
    """``(METHOD, path)`` of the route an API Gateway payload-2.0 event was routed by; None for other events."""
    if not isinstance(event, dict):
        return None
    route_key = event.get("routeKey")
    if isinstance(route_key, str) and " " in route_key:
        method, path = route_key.split(" ", 1)
        return method.upper(), path
    http = (event.get("requestContext") or {}).get("http") if isinstance(event.get("requestContext"), dict) else None
    if isinstance(http, dict) and isinstance(http.get("method"), str) and isinstance(event.get("rawPath"), str):
        return http["method"].upper(), event["rawPath"]
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the contract as the JSON OpenApiFunction serves")
    parser.add_argument("--routes", action="store_true", help="print the contract's routes (METHOD path auth)")
    args = parser.parse_args(argv)
    if args.json:
        sys.stdout.write(to_json(contract()))
    else:
        for method, path, auth in sorted(contract_routes(contract()), key=lambda route: (route[1], route[0])):
            print(f"{method:6} {path:24} {auth}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
