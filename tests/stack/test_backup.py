"""`make backup` and `make restore`'s work (stack/backup.py) on Debian's victoria-metrics: known
series in, a backup, a restore into an empty store, and the same answers out."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stack import backup, native
from stack.native_user import account
from stack.processes import launch, stop
from stack.settings import StackError

from .victoriametrics import VictoriaMetrics

pytestmark = pytest.mark.skipif(
    not shutil.which("vmbackup"), reason="Debian's victoria-metrics is not installed"
)
PASSWORD = "a-long-random-password-for-the-test"
STEP = 15  # seconds between samples, as a scrape
Completed = subprocess.CompletedProcess[str]


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[list[VictoriaMetrics]]:
    started: list[VictoriaMetrics] = []
    yield started
    for store in started:
        store.stop()


def known_series(end: int) -> list[str]:
    """Counters, gauges and a histogram over 10 minutes, in the import format (ms)."""
    lines = []
    for step in range(40):
        at = (end - (39 - step) * STEP) * 1000
        for pod in range(5):
            for status in ("200", "404", "500"):
                value = step * (pod + 1) * (3 if status == "200" else 1)
                lines.append(f'kept_requests_total{{pod="p{pod}",status="{status}"}} {value} {at}')
            lines.append(f'kept_queue_depth{{pod="p{pod}"}} {(step * 7 + pod) % 13 * 0.5} {at}')
            for le in ("0.1", "1", "+Inf"):
                lines.append(f'kept_latency_bucket{{pod="p{pod}",le="{le}"}} {step * len(le)} {at}')
    return lines


def answers(store: VictoriaMetrics, end: int) -> tuple[list[str], list[object]]:
    """Every series with its samples, and range queries over them (per series: a sum across
    series may add in any order, so its last bits differ from one query to the next)."""
    queries = ["rate(kept_requests_total[1m])", "max_over_time(kept_queue_depth[2m])",
               "histogram_quantile(0.9, rate(kept_latency_bucket[1m]))"]  # fmt: skip
    return store.export(), [store.query_range(q, end - 600, end, "30s") for q in queries]


def round_trip(tmp_path: Path, stores: list[VictoriaMetrics], password: str | None) -> None:
    source = VictoriaMetrics(tmp_path / "source", tmp_path / "source.log", password)
    stores.append(source)
    end = int(time.time()) - 120
    source.ingest(known_series(end))
    source.flush()
    before = answers(source, end)
    assert len(before[0]) == 5 * 7
    assert all(r["result"] for r in before[1])  # type: ignore[index]
    said: list[str] = []

    folder = backup.backup_store(source.store, tmp_path / "backups" / "one", said.append)

    assert (folder / backup.COMPLETE).is_file()
    assert json.loads(source.call("/snapshot/list"))["snapshots"] == []  # deleted again
    source.stop()
    empty = tmp_path / "restored"
    backup.restore_store(folder, empty, said.append)
    restored = VictoriaMetrics(empty, tmp_path / "restored.log", password)
    stores.append(restored)
    assert answers(restored, end) == before
    assert any(line.startswith("  vmrestore: done") for line in said)


def test_a_restore_into_an_empty_store_answers_as_the_original(
    tmp_path: Path, stores: list[VictoriaMetrics]
) -> None:
    round_trip(tmp_path, stores, None)


def test_with_basic_auth_the_snapshot_is_asked_for_with_the_monitoring_user(
    tmp_path: Path, stores: list[VictoriaMetrics]
) -> None:
    round_trip(tmp_path, stores, PASSWORD)


def test_without_credentials_an_authenticated_store_refuses_and_no_folder_is_left(
    tmp_path: Path, stores: list[VictoriaMetrics]
) -> None:
    store = VictoriaMetrics(tmp_path / "data", tmp_path / "vm.log", PASSWORD)
    stores.append(store)
    anonymous = backup.Store(store.store.url, store.store.data)
    with pytest.raises(StackError, match=r"HTTP 401 \(sent no credentials"):
        backup.backup_store(anonymous, tmp_path / "out", print)
    assert not (tmp_path / "out").exists()


def test_a_backup_goes_into_a_new_folder_and_a_restore_needs_a_complete_one(
    tmp_path: Path,
) -> None:
    store = backup.Store("http://127.0.0.1:9", tmp_path / "data")
    with pytest.raises(StackError, match="exists: a backup goes into a new folder"):
        backup.backup_store(store, tmp_path, print)
    with pytest.raises(StackError, match="no such folder"):
        backup.restore_store(tmp_path / "missing", tmp_path / "data", print)
    with pytest.raises(StackError, match="holds no complete backup"):
        backup.restore_store(tmp_path, tmp_path / "data", print)


def test_a_restore_refuses_a_data_directory_a_running_store_holds(
    tmp_path: Path, stores: list[VictoriaMetrics]
) -> None:
    store = VictoriaMetrics(tmp_path / "data", tmp_path / "vm.log")
    stores.append(store)
    folder = backup.backup_store(store.store, tmp_path / "backup", print)
    with pytest.raises(StackError, match="still runs on"):
        backup.restore_store(folder, store.store.data, print)


def test_the_single_topology_has_no_store_to_back_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STACK_RUN_ROOT", str(tmp_path))
    with pytest.raises(StackError, match="single topology has no long-term store"):
        backup.backup("dev", "single", tmp_path / "out", "native")
    assert not (tmp_path / "out").exists()


def test_on_compose_debians_binaries_run_in_a_one_off_container_of_the_store(
    tmp_path: Path,
) -> None:
    service = {"command": ["-storageDataPath=/storage", "-retentionPeriod=13"]}
    common = ["--no-deps", "-T", "--volume"]
    assert backup.backup_command(tmp_path, service) == [
        "run", "--rm", *common, f"{tmp_path}:/backup", "--entrypoint", "/usr/bin/vmbackup",
        "--env", "snapshot_createURL", "victoriametrics", "-storageDataPath=/storage",
        "-httpListenAddr=127.0.0.1:0", "-envflag.enable", "-dst=fs:///backup",
    ]  # fmt: skip
    assert backup.restore_command(tmp_path, {}) == [
        "run", "--rm", *common, f"{tmp_path}:/backup:ro", "--entrypoint", "/usr/bin/vmrestore",
        "victoriametrics", "-storageDataPath=/storage", "-httpListenAddr=127.0.0.1:0",
        "-src=fs:///backup",
    ]  # fmt: skip


@dataclass
class OneService:
    """The project model as far as make backup reads it: the HA topology's store service."""

    env: str
    run_dir: Path
    topology: str | None = "ha"
    ha: bool = True

    def services(self) -> dict[str, Any]:
        return {"victoriametrics": {"command": ["-storageDataPath=/storage"],
                                    "volumes": ["victoriametrics-data:/storage:rw"]}}  # fmt: skip

    def exposed_port(self, service: str) -> int:
        return 8428


def test_natively_a_restore_stops_the_store_by_pid_and_make_up_starts_it_on_the_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stores: list[VictoriaMetrics]
) -> None:
    monkeypatch.setenv("STACK_RUN_ROOT", str(tmp_path / "run"))
    monkeypatch.setattr(backup, "Project", OneService)
    where = native.layout("dev")
    (where.run_dir / "secrets").mkdir(parents=True)
    (where.run_dir / "secrets" / "monitoring_password").write_text(PASSWORD + "\n")
    data = where.data_dir / "victoriametrics-data"  # the named volume's, natively
    store = VictoriaMetrics(data, tmp_path / "vm.log", PASSWORD)
    stores.append(store)
    rest = launch(["sleep", "60"], tmp_path / "rest.log")  # the rest of the stack
    entry = {"port": None, "url": store.store.url, "job": None, "stop_signal": 15}
    parts = {"victoriametrics": store.running, "rest": rest}
    components = {name: running.as_dict() | entry for name, running in parts.items()}
    native.save_state(where, {"env": "dev", "topology": "ha", "components": components})
    end = int(time.time()) - 120
    store.ingest(known_series(end))
    store.flush()
    before = answers(store, end)
    try:
        assert backup.backup("dev", "ha", tmp_path / "backup", "native") == 0
        store.ingest([f"added_later 1 {end * 1000}"])  # the restore takes it away again

        def up(env: str, topology: str | None = None) -> int:
            assert (env, topology) == ("dev", "ha")
            stores.append(VictoriaMetrics(data, tmp_path / "vm.log", PASSWORD))
            return 0

        monkeypatch.setattr(backup.native, "up", up)
        assert backup.restore("dev", "ha", tmp_path / "backup", "native") == 0
    finally:
        stop(rest)
    assert not store.running.alive()
    assert "victoriametrics" not in native.load_state(where)["components"]
    assert answers(stores[-1], end) == before
    assert data.stat().st_uid == account().uid  # pa-monitoring's again, as root


@pytest.mark.parametrize("local", [True, False])
def test_on_compose_the_password_reaches_vmbackup_in_its_environment_never_in_argv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local: bool
) -> None:
    run_dir = tmp_path / "dev"
    (run_dir / "secrets").mkdir(parents=True)
    (run_dir / "secrets" / "monitoring_password").write_text("p@ss/word\n")
    monkeypatch.setattr(backup.compose, "target", lambda start: backup.compose.Target(local))
    monkeypatch.setattr(backup.compose, "project", lambda *a: OneService("dev", run_dir))
    calls: list[tuple[list[str], dict[str, str]]] = []

    def docker(model: object, where: object, args: list[str], **kw: Any) -> Completed:
        calls.append((args, kw.get("extra") or {}))
        return subprocess.CompletedProcess(args, 0, "4f2a\n" if args[0] == "ps" else "", "")

    monkeypatch.setattr(backup, "_docker", docker)
    if not local:
        with pytest.raises(StackError, match="upstream image, which has no vmbackup"):
            backup.backup("dev", "ha", tmp_path / "out", "compose")
        return
    assert backup.backup("dev", "ha", tmp_path / "out", "compose") == 0
    (ps, _), (run, extra) = calls
    assert ps == ["ps", "--quiet", "victoriametrics"]
    service = OneService("dev", run_dir).services()["victoriametrics"]
    assert run == backup.backup_command(tmp_path / "out", service)
    url = "http://monitoring:p%40ss%2Fword@victoriametrics:8428/snapshot/create"
    assert extra == {"snapshot_createURL": url}
    assert not any("p@ss" in arg or "p%40ss" in arg for arg in run)
