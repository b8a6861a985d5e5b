"""The OpenAPI 3.1 document of a route table (served at ``/openapi.json``).

Generated from the same :class:`~.http.Route` objects the router serves, so every
path, parameter, body and answer in the document is one the server has, and the other
way round. Answers every route can give are added here: 401 (token), 404/422
(parameters), 400/413/415 (bodies), 405 (method).
"""

from __future__ import annotations

from .. import __version__
from .http import PROBLEM, Route

SECURITY = "bearerToken"


def _problem(description: str) -> dict:
    return {"description": description,
            "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def _operation(route: Route) -> dict:
    responses: dict[str, dict] = {}
    for status, (description, schema) in route.responses.items():
        answer: dict = {"description": description}
        media = route.media.get(status)
        if media is not None:
            answer["content"] = {media: {"schema": {"type": "string",
                                                    "format": "binary"}}}
        elif schema is not None:
            answer["content"] = {"application/json": {"schema": schema}}
        responses[str(status)] = answer
    if not route.public:
        responses["401"] = _problem("no token, or an unknown or revoked one")
    if route.path_params or route.body is not None:
        responses["404"] = _problem("no such resource")
        responses["409"] = _problem("the operation contradicts the current state")
    if route.path_params or route.query or route.body is not None:
        responses["422"] = _problem("a parameter or a field is invalid")
    # Twisted itself answers 400 with no body to a request line or header too long.
    responses["400"] = _problem("the body is not JSON") if route.body is not None else {
        "description": "the request line or a header is malformed or too long"}
    if route.body is not None:
        responses["413"] = _problem("the body is larger than webadmin.maxBodySize")
        responses["415"] = _problem("the body is not application/json")
    responses["405"] = _problem("the method is not allowed on this path")
    op: dict = {"operationId": route.operation_id, "summary": route.summary,
                "tags": [route.tag], "responses": responses}
    if route.description:
        op["description"] = route.description
    params = [{"name": p.name, "in": "path", "required": True, "schema": p.schema,
               **({"description": p.description} if p.description else {})}
              for p in route.path_params]
    params += [{"name": p.name, "in": "query", "required": p.required,
                "schema": {k: v for k, v in p.schema.items() if v is not None},
                **({"description": p.description} if p.description else {})}
               for p in route.query]
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": route.body}}}
    op["security"] = [] if route.public else [{SECURITY: []}]
    return op


def document(routes: list[Route], problem_schema: dict) -> dict:
    paths: dict[str, dict] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    paths["/openapi.json"] = {"get": {
        "operationId": "openapi", "summary": "This document", "tags": ["meta"],
        "security": [], "responses": {"200": {"description": "the OpenAPI document",
                                              "content": {"application/json": {
                                                  "schema": {"type": "object"}}}},
                                      "400": {"description": "malformed request"},
                                      "405": _problem("the method is not allowed")}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "mailet-mta admin API", "version": __version__,
                 "description": "Domains, users, mappings, mail repositories, the "
                                "outgoing queue, the spool, nodes and health of one "
                                "mailet-mta server (docs/webadmin.md)."},
        "paths": paths,
        "components": {
            "schemas": {"Problem": problem_schema},
            "securitySchemes": {SECURITY: {
                "type": "http", "scheme": "bearer",
                "description": "a token made with mailet-mta webadmin token create NAME"}}},
        "security": [{SECURITY: []}],
    }
