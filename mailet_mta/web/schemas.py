"""JSON Schemas of the admin API's values: one place for the route table, the request
checks and the OpenAPI document."""

from __future__ import annotations

from .http import MAX_INT

STRING = {"type": "string"}
TEXT_OR_NULL = {"type": ["string", "null"]}
INTEGER = {"type": "integer"}
NUMBER = {"type": "number"}
NUMBER_OR_NULL = {"type": ["number", "null"]}
BOOLEAN = {"type": "boolean"}
OBJECT = {"type": "object"}
STRINGS = {"type": "array", "items": STRING}

DOMAIN = {"type": "string", "minLength": 1, "maxLength": 255}
ADDRESS = {"type": "string", "minLength": 1, "maxLength": 320}
NAME = {"type": "string", "minLength": 1, "maxLength": 255}
ID = {"type": "integer", "minimum": 1, "maximum": MAX_INT}
OFFSET = {"type": "integer", "minimum": 0, "maximum": MAX_INT, "default": 0}
DEFAULT_PAGE = 100


def obj(props: dict, optional: tuple = ()) -> dict:
    """An object with ``props``, all required except ``optional``."""
    return {"type": "object", "properties": props,
            "required": [k for k in props if k not in optional]}


def body(props: dict, optional: tuple = ()) -> dict:
    """A request body: an object with no other fields."""
    return {**obj(props, optional), "additionalProperties": False}


def page_of(item: dict) -> dict:
    return obj({"items": {"type": "array", "items": item}, "total": INTEGER,
                "limit": INTEGER, "offset": INTEGER})


def limit(max_page: int) -> dict:
    return {"type": "integer", "minimum": 1, "maximum": max_page,
            "default": min(DEFAULT_PAGE, max_page)}


PROBLEM = obj({"type": STRING, "title": STRING, "status": INTEGER, "detail": STRING,
               "instance": STRING})

DOMAIN_ITEM = obj({"name": STRING, "source": {"type": "string",
                                             "enum": ["domains table",
                                                      "servernames (config)"]},
                   "created": NUMBER_OR_NULL})
USER = obj({"name": STRING, "used": INTEGER, "quota": {"type": ["integer", "null"]},
            "created": NUMBER})
QUOTA = {"type": ["string", "integer", "null"], "maxLength": 32, "minimum": 0,
         "maximum": MAX_INT,
         "description": "octets, or a size such as 500m or 2g; null, 0 or 'none': "
                        "unlimited"}
PASSWORD = {"type": "string", "minLength": 1, "maxLength": 1024}
MAPPING = obj({"source": STRING, "target": STRING,
               "kind": {"type": "string", "enum": ["address", "forward", "catch-all",
                                                   "domain", "regex", "error"]},
               "origin": {"type": "string", "enum": ["configuration", "database"]}})
REPOSITORY = obj({"name": STRING, "mails": INTEGER})
STORED_MAIL = obj({"id": INTEGER, "repository": STRING, "name": STRING, "state": STRING,
                   "sender": TEXT_OR_NULL, "recipients": STRINGS, "error": TEXT_OR_NULL,
                   "remote_addr": STRING, "remote_host": STRING, "created": NUMBER})
STORED_MAIL_DETAIL = obj({**STORED_MAIL["properties"], "attributes": OBJECT,
                          "size": {"type": ["integer", "null"]}})
MOVED = obj({"moved": {"type": "array", "items": obj({"name": STRING, "state": STRING})}})
QUEUE_ENTRY = obj({"id": INTEGER, "queue": STRING, "mail": STRING, "domain": STRING,
                   "sender": STRING, "recipients": {"type": "array", "items": OBJECT},
                   "attempts": INTEGER, "dns_failures": INTEGER, "next_attempt": NUMBER,
                   "last_error": TEXT_OR_NULL, "created": NUMBER, "owner": TEXT_OR_NULL,
                   "lease_until": NUMBER_OR_NULL, "options": OBJECT})
DESTINATION = obj({"queue": STRING, "destination": STRING, "mails": INTEGER,
                   "pending_recipients": INTEGER, "attempts": INTEGER,
                   "next_attempt": NUMBER_OR_NULL, "last_error": TEXT_OR_NULL,
                   "oldest": NUMBER})
DUE = obj({"due": INTEGER})
SPOOL_STATE = obj({"state": STRING, "mails": INTEGER, "oldest": NUMBER_OR_NULL,
                   "retrying": INTEGER, "next_retry": NUMBER_OR_NULL})
SPOOL_MAIL = obj({"name": STRING, "state": STRING, "sender": TEXT_OR_NULL,
                  "recipients": STRINGS, "tries": INTEGER, "not_before": NUMBER,
                  "created": NUMBER, "owner": TEXT_OR_NULL, "error": TEXT_OR_NULL})
NODE = obj({"name": STRING, "started": NUMBER, "heartbeat": NUMBER, "info": OBJECT,
            "spool": INTEGER, "outgoing": INTEGER, "pop3_locks": INTEGER,
            "alive": BOOLEAN})
HEALTH = obj({"status": {"type": "string", "enum": ["healthy", "unhealthy"]},
              "checks": {"type": "array", "items": obj({
                  "componentName": STRING,
                  "status": {"type": "string", "enum": ["healthy", "unhealthy"]},
                  "cause": TEXT_OR_NULL})}})
