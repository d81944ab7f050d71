"""`perpnet bench l1` refuses bad proof parameters before it starts anything."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from perpnet.cli import app


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--blowup", "3"], "blowup must be a power of two"),
        (["--queries", "0"], "num_queries must be in [1, 255]"),
        (["--stark-sizes", "64,0"], "batch sizes must be positive"),
    ],
)
def test_bad_parameters_are_refused_with_the_reason(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["bench", "l1", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split()).replace("│", "").replace("  ", " ")
