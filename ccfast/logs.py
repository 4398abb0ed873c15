"""Structured logging for ccfast: human-readable by default, one JSON object per line by option.

Contract:
- ``setup_logging(level, json_format, stream)`` configures the ``ccfast`` logger tree once
  (idempotent: calling it again replaces ccfast's handler, it never stacks handlers) and leaves
  the root logger alone.
- Context fields ``queue``, ``member``, ``agent``, ``uuid``, ``box``, ``offer`` (see ``FIELDS``)
  are passed with ``extra=`` or bound with ``bind(logger, queue=…)``; the human format appends
  them as ``key=value``, the JSON format as keys.
- The dispatcher's hot path (joins, offers, results, ESL events) logs nothing per event at INFO
  or above; per-event lines are DEBUG. What is visible at INFO are lifecycle and trouble: start,
  config, ESL connect/disconnect/reconnect, store failover, errors.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sys
from collections.abc import Mapping
from typing import IO, Any

FIELDS = ("queue", "member", "agent", "uuid", "box", "offer")
ROOT = "ccfast"
_HANDLER_MARK = "_ccfast_handler"
_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The context fields carried by a record, known ones first, then any other ``extra``."""
    out = {name: record.__dict__[name] for name in FIELDS if record.__dict__.get(name) is not None}
    for key, value in record.__dict__.items():
        if key not in _RESERVED and key not in out and not key.startswith("_") and value is not None:
            out[key] = value
    return out


def _timestamp(record: logging.LogRecord) -> str:
    return _dt.datetime.fromtimestamp(record.created, _dt.timezone.utc).isoformat(timespec="milliseconds")


class HumanFormatter(logging.Formatter):
    """``2024-05-01T10:00:00.123+00:00 INFO  ccfast.esl: link up box=fs1``"""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{_timestamp(record)} {record.levelname:<5} {record.name}: {record.getMessage()}"
        fields = _fields(record)
        if fields:
            text += " " + " ".join(f"{k}={_quote(v)}" for k, v in fields.items())
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def _quote(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (not text or any(c in text for c in ' "=')) else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the context fields, exc (if any)."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _fields(record).items():
            obj[key] = value if isinstance(value, (str, int, float, bool)) else str(value)
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        return json.dumps(obj, ensure_ascii=False)


def setup_logging(level: int | str = "INFO", json_format: bool = False, stream: IO[str] | None = None) -> logging.Logger:
    """Configure the ``ccfast`` logger: one handler to ``stream`` (stderr) in the chosen format."""
    if isinstance(level, str):
        resolved = logging.getLevelName(level.upper())
        if not isinstance(resolved, int):
            raise ValueError(f"unknown log level {level!r}; expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
        level = resolved
    logger = logging.getLogger(ROOT)
    for handler in list(logger.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(JsonFormatter() if json_format else HumanFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # ours are formatted here; do not print twice via root
    return logger


class ContextAdapter(logging.LoggerAdapter):
    """A LoggerAdapter whose bound fields merge with per-call ``extra=`` (per-call wins)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = kwargs.get("extra")
        kwargs["extra"] = {**self.extra, **extra} if extra else dict(self.extra)
        return msg, kwargs

    def bind(self, **fields: Any) -> ContextAdapter:
        return ContextAdapter(self.logger, {**self.extra, **fields})


def bind(logger: logging.Logger | ContextAdapter | str, **fields: Any) -> ContextAdapter:
    """A logger carrying context fields, e.g. ``bind(log, queue=q, member=m)``."""
    if isinstance(logger, ContextAdapter):
        return logger.bind(**fields)
    if isinstance(logger, str):
        logger = logging.getLogger(logger)
    return ContextAdapter(logger, dict(fields))


def fields_of(record: logging.LogRecord) -> Mapping[str, Any]:
    """The context fields of a record (tests, custom handlers)."""
    return _fields(record)


__all__ = ["setup_logging", "bind", "ContextAdapter", "HumanFormatter", "JsonFormatter", "FIELDS", "fields_of"]
