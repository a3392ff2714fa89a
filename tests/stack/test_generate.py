"""Generated files: what `make generate` writes is what the repository holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from stack import ENVIRONMENTS, ROOT, render
from stack.services import records
from stack.settings import StackError, images

from .conftest import edit


def test_the_repository_holds_what_make_generate_writes() -> None:
    assert render.drift() == [], "run `make generate`"


def test_an_edited_source_or_generated_file_is_drift(repo_copy: Path) -> None:
    assert render.drift(repo_copy) == []
    edit(repo_copy / "prometheus" / "prometheus.yml", "job_name: redis", "job_name: redis2")
    edit(repo_copy / "alertmanager" / "generated" / "alertmanager.prod.yml", "4h", "5h")
    assert {p.relative_to(repo_copy) for p in render.drift(repo_copy)} == {
        Path(f"prometheus/generated/prometheus.{env}{ha}.yml")
        for env in ENVIRONMENTS
        for ha in ("", ".ha")  # the HA topology's is made from it too
    } | {
        Path("alertmanager/generated/alertmanager.prod.yml"),
        Path("docs/metrics.md"),  # the catalog names the job that exposes a metric
    }
    assert render.write(repo_copy) and render.drift(repo_copy) == []


def test_each_environment_gets_its_own_interval_and_label() -> None:
    for env in ENVIRONMENTS:
        text = (ROOT / "prometheus" / "generated" / f"prometheus.{env}.yml").read_text()
        settings = (ROOT / "compose" / "env" / f"{env}.env").read_text()
        interval = next(
            line.split("=", 1)[1] for line in settings.splitlines() if line.startswith("SCRAPE_")
        )
        assert f"  scrape_interval: {interval}\n" in text
        assert f"    env: {env}\n" in text
        assert "${" not in text


def test_an_unknown_reference_names_itself(repo_copy: Path) -> None:
    edit(repo_copy / "prometheus" / "prometheus.yml", "${ENV}", "${ENVIRONMENT}")
    with pytest.raises(StackError, match="no value for ENVIRONMENT"):
        render.prometheus_config("dev", repo_copy)


def test_the_stack_page_lists_every_pinned_image() -> None:
    page = (ROOT / render.VERSIONS_DOC).read_text()
    for variable, reference in images().items():
        name, _, digest = reference.partition("@")
        assert digest.startswith("sha256:") and len(digest) == 71, variable
        assert f"| `{variable}` | `{name.rpartition(':')[0]}` | {name.rpartition(':')[2]} |" in (
            page
        )


def test_a_hand_edited_versions_table_is_drift(repo_copy: Path) -> None:
    edit(repo_copy / render.VERSIONS_DOC, "| prometheus 2.42.0 |", "| prometheus 2.43.0 |")
    assert render.drift(repo_copy) == [repo_copy / render.VERSIONS_DOC]
    assert render.write(repo_copy) and render.drift(repo_copy) == []
    assert "| prometheus 2.42.0 |" in (repo_copy / render.VERSIONS_DOC).read_text()


def test_a_page_without_the_versions_markers_is_refused(repo_copy: Path) -> None:
    edit(repo_copy / render.VERSIONS_DOC, render.VERSIONS_END, "")
    with pytest.raises(StackError, match="markers"):
        render.versions_doc(repo_copy)


def test_the_versions_file_is_generated_from_the_records(repo_copy: Path) -> None:
    pinned = images(repo_copy)
    for record in records().values():
        assert record.image is None or pinned[record.image_variable] == record.image, record.name
    edit(repo_copy / "compose" / "versions.env", "prom/prometheus:v3.5.0", "prom/prometheus:v3.6.0")
    assert render.drift(repo_copy) == [repo_copy / "compose" / "versions.env"]
    render.write(repo_copy)
    assert images(repo_copy) == pinned
    assert (repo_copy / "compose" / "versions.env").read_text().startswith("# GENERATED")


def test_an_image_not_pinned_by_tag_and_digest_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "services.toml"
    path.write_text('[node-exporter]\nruns = "binary"\nimage = "prom/node-exporter:latest"\n')
    with pytest.raises(StackError, match=r"\[node-exporter\]: image .* is not pinned"):
        records(path)
