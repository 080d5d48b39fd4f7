"""Structured logs, with the request id and friends bound in contextvars.

JSON lines (one object per line) for machines, readable console lines for people: JSON unless
stdout is a terminal, or as `POLAR_LOG_JSON` says (`make dev` asks for console lines). structlog
renders both our own log calls and stdlib `logging` records (grpc, nats, asyncpg), so every
line of a service has the same shape.

Tracebacks never carry frame locals: a frame of a sign-in holds the user's GitHub token, a
frame of SQLAlchemy the statement's parameters. They are also cut to the last few frames.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import Processor

from polar_kit.tracing import add_trace_ids

MAX_FRAMES = 12


def wants_json(json: bool | None) -> bool:
    """`json` when set, else JSON unless stdout is a terminal."""
    return json if json is not None else not sys.stdout.isatty()


def configure_logging(level: str = "INFO", json: bool | None = None) -> None:
    shared: list[Processor] = [
        # request_id, rpc, subject, consumer... bound with structlog.contextvars.
        structlog.contextvars.merge_contextvars,
        add_trace_ids,  # trace_id / span_id of the current span
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor
    if wants_json(json):
        shared.append(
            structlog.processors.ExceptionRenderer(
                ExceptionDictTransformer(show_locals=False, max_frames=MAX_FRAMES)
            )
        )
        renderer = structlog.processors.JSONRenderer()
    else:
        colors = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        renderer = structlog.dev.ConsoleRenderer(
            colors=colors, exception_formatter=structlog.dev.plain_traceback
        )

    structlog.configure(
        processors=[
            # Lines below the level are dropped before the processors run, not after (the
            # hot paths log one INFO line per webhook and per message handled).
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
