"""Webhook triggers: a route per workflow that starts a run from a signed JSON body."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
