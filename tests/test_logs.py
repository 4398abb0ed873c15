"""Structured logging: human and JSON formats, bound context fields, no handler stacking."""

import io
import json
import logging

import pytest

from ccfast.logs import FIELDS, bind, setup_logging


@pytest.fixture
def restore_ccfast_logger():
    logger = logging.getLogger("ccfast")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def test_json_lines_carry_context_fields(restore_ccfast_logger):
    out = io.StringIO()
    setup_logging("DEBUG", json_format=True, stream=out)
    log = bind("ccfast.service", queue="support@default", box="fs1")
    log.info("offer %s", "started", extra={"member": "m-1", "agent": "1000@default", "uuid": "u-1"})
    log.bind(offer=7).warning("no answer")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0]["msg"] == "offer started" and lines[0]["level"] == "INFO"
    assert lines[0]["logger"] == "ccfast.service"
    assert {k: lines[0][k] for k in ("queue", "member", "agent", "uuid", "box")} == {
        "queue": "support@default", "member": "m-1", "agent": "1000@default", "uuid": "u-1", "box": "fs1"}
    assert lines[1]["offer"] == 7 and lines[1]["queue"] == "support@default" and "member" not in lines[1]
    assert lines[0]["ts"].endswith("+00:00")


def test_human_format_appends_key_values(restore_ccfast_logger):
    out = io.StringIO()
    setup_logging("INFO", stream=out)
    logging.getLogger("ccfast.esl").info("link up", extra={"box": "fs 1", "queue": "q"})
    logging.getLogger("ccfast.esl").debug("per-event line")  # below the default level
    text = out.getvalue()
    assert text.count("\n") == 1
    assert "INFO  ccfast.esl: link up" in text
    assert 'queue=q box="fs 1"' in text  # known fields in FIELDS order, quoted when needed
    assert FIELDS.index("queue") < FIELDS.index("box")


def test_exceptions_are_included(restore_ccfast_logger):
    out = io.StringIO()
    setup_logging("INFO", json_format=True, stream=out)
    try:
        raise ValueError("bad")
    except ValueError:
        logging.getLogger("ccfast.store").exception("write failed", extra={"queue": "q"})
    line = json.loads(out.getvalue())
    assert "ValueError: bad" in line["exc"] and line["queue"] == "q"


def test_setup_is_idempotent_and_validates_level(restore_ccfast_logger):
    out = io.StringIO()
    setup_logging("INFO", stream=out)
    setup_logging("INFO", stream=out)
    logging.getLogger("ccfast.x").warning("once")
    assert out.getvalue().count("once") == 1
    with pytest.raises(ValueError, match="unknown log level 'LOUD'"):
        setup_logging("LOUD")
