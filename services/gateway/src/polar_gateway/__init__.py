"""The gateway: the one process the outside world talks to (HTTP/JSON, OAuth, webhooks, SSE)."""
