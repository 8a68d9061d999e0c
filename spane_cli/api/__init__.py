"""`spane serve`: the HTTP API, an ASGI application over the engine and the store.

- `app.py` — `create_app(settings)`: the routers, the error handlers, the OpenAPI document.
- `problems.py` — errors as RFC 9457 `application/problem+json`, spane's errors mapped to
  HTTP statuses.
- `auth.py` — bearer tokens and their scopes as a FastAPI dependency; failures slowed down.
- `streams.py` — events and logs of an execution over SSE and NDJSON.
- `webhooks.py` — signed webhook triggers of workflows.
"""
