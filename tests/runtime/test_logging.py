"""Logs are JSON, one object per line, with the service name and any extra fields."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from perpnet.runtime.logging import configure_logging


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging("sequencer", "DEBUG", stream)
    try:
        yield stream
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_one_json_object_per_line(captured: io.StringIO) -> None:
    log = logging.getLogger("perpnet.sequencer")
    log.info("batch cut", extra={"batch_id": 7, "root": b"\x01\xff", "txs": [1, 2]})
    log.debug("multi\nline message")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    entries = [json.loads(line) for line in captured.getvalue().splitlines()]
    first, second, third = [e for e in entries if e["logger"] == "perpnet.sequencer"]
    assert first["msg"] == "batch cut" and first["level"] == "INFO"
    assert first["service"] == "sequencer" and first["logger"] == "perpnet.sequencer"
    assert first["batch_id"] == 7 and first["root"] == "0x01ff" and first["txs"] == [1, 2]
    assert first["ts"].endswith("Z") and "T" in first["ts"]
    assert second["msg"] == "multi\nline message"
    assert third["level"] == "ERROR" and "ValueError: boom" in third["exc"]


def test_level_filters(captured: io.StringIO) -> None:
    configure_logging("sequencer", "WARNING", captured)
    logging.getLogger("perpnet.x").info("hidden")
    logging.getLogger("perpnet.x").warning("shown")
    entries = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert [e["msg"] for e in entries if e["logger"] == "perpnet.x"] == ["shown"]
