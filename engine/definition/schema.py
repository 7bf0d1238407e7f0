"""JSON Schema of the pathway language, for editors (VS Code's YAML extension and others)."""

from __future__ import annotations

from typing import Any

from engine.catalogue import ACTIONS, EVENT_MODELS, ROLES
from engine.definition.document import PathwayDoc

SCHEMA_ID = "https://carepath.dev/schema/pathway.json"


def json_schema() -> dict[str, Any]:
    """The structural schema, with the catalogue's names offered as completions."""
    schema = PathwayDoc.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["title"] = "Carepath pathway"
    defs = schema.get("$defs", {})
    action = defs.get("ActionDoc", {}).get("properties", {})
    if "action" in action:
        action["action"] = {"enum": sorted(ACTIONS), "description": "the action type"}
    for key in ("role",):
        action[key] = {"enum": sorted(ROLES), "description": "who must act"}
    level = defs.get("LevelDoc", {}).get("properties", {})
    if "role" in level:
        level["role"] = {"enum": sorted(ROLES), "description": "who must acknowledge"}
    schema["$defs"]["EventType"] = {"enum": sorted(EVENT_MODELS)}
    return schema
