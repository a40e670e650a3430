"""A selector's key: the same for equal selectors, one word of a routing key."""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel

VERSION_HEADER = "x-mesh-version"


def canonical(selector: BaseModel) -> str:
    return json.dumps(selector.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def selector_key(selector: BaseModel) -> str:
    return hashlib.sha256(canonical(selector).encode()).hexdigest()[:32]
