"""isolated(): clear errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI

from .driver import call, isolated


def test_rejects_a_non_starlette_app() -> None:
    async def bare(scope: object, receive: object, send: object) -> None:
        return None

    with pytest.raises(TypeError, match="FastAPI or Starlette"):
        isolated(bare)


def test_rejects_an_app_already_serving() -> None:
    app = FastAPI()
    call(app, "/")
    with pytest.raises(RuntimeError, match="before the app serves"):
        isolated(app)


def test_rejects_instrumenting_twice() -> None:
    app = FastAPI()
    isolated(app)
    with pytest.raises(RuntimeError, match="instrumented already"):
        isolated(app)


@pytest.mark.parametrize("path", ["metrics", "/metrics/", ""])
def test_rejects_a_bad_metrics_path(path: str) -> None:
    with pytest.raises(ValueError, match="metrics_path"):
        isolated(FastAPI(), metrics_path=path)


def test_rejects_token_and_token_file_together(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("x")
    with pytest.raises(ValueError, match="not both"):
        isolated(FastAPI(), token="x", token_file=tmp_path / "t")


def test_rejects_a_missing_or_empty_token_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        isolated(FastAPI(), token_file=tmp_path / "missing")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        isolated(FastAPI(), token_file=tmp_path / "empty")


@pytest.mark.parametrize(
    "labels",
    [{"bad-name": "x"}, {"__reserved": "x"}, {"method": "x"}, {"queue": "x"}, {"metric": "x"}],
)
def test_rejects_bad_const_labels(labels: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="label"):
        isolated(FastAPI(), const_labels=labels)


def test_rejects_a_label_cap_below_one() -> None:
    with pytest.raises(ValueError, match="label_cap"):
        isolated(FastAPI(), label_cap=0)


def test_rejects_an_empty_health_history() -> None:
    with pytest.raises(ValueError, match="health_history"):
        isolated(FastAPI(), health_history=0)


def test_a_rejected_instrument_registers_nothing() -> None:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    with pytest.raises(ValueError, match="clashes"):
        isolated(FastAPI(), registry=registry, const_labels={"provider": "x"})
    isolated(FastAPI(), registry=registry, const_labels={"service": "x"})  # a corrected retry
