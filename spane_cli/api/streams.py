"""Events and logs of an execution as Server-Sent Events and NDJSON streams."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
