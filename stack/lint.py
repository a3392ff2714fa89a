"""``make lint`` for the stack's configuration, on a machine without Docker: every check runs
the real tool (promtool, amtool, yamllint, check-jsonschema, docker-compose) and shows its
message when it fails. ``preflight`` runs the same checks on one environment's real files
before `make up` starts anything."""

from __future__ import annotations

import contextlib
import functools
import json
import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import yaml

from . import (
    ENVIRONMENTS,
    ROOT,
    alert_checks,
    catalog,
    hardening,
    longterm,
    ports,
    runbook_checks,
    runbooks,
    vmalert,
    webauth,
)
from .dashboards.shared import panels
from .project import COMPOSE, Project
from .promql import lookback, seconds
from .render import drift, prometheus_file
from .rules import LOADED, alert_problems, rule_files, rule_test_files
from .rules import read as read_rules
from .secrets import EXAMPLE, dotenv_path, prepare, resolve, run_root
from .services import records
from .settings import (
    TOPOLOGIES,
    StackError,
    check_environment,
    environment_settings,
    read_env_file,
)
from .tools import ALERTMANAGER_CHECK, PROMETHEUS_CHECK, config_check, run, tool
from .yamlfile import load_yaml

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Check:
    name: str
    problems: list[str]


def stand_in_run_dir(env: str, work: Path, root: Path = ROOT) -> Path:
    """.run/<env> as `make up` would write it, from .env.example's values."""
    return prepare(env, read_env_file(EXAMPLE), work / env, root)


def projects(root: Path, work: Path, *, local_too: bool = False) -> Iterator[Project]:
    """Every environment in every topology (and on the local engine too, ``local_too``)."""
    for env in ENVIRONMENTS:
        run_dir = stand_in_run_dir(env, work, root)  # the same for each of its projects
        for topology in TOPOLOGIES:
            for local in (False, True) if local_too else (False,):
                yield Project(env, run_dir, local, root, topology)


def in_pairs(work: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``work`` on each item, two at a time (the tools take up to seconds each, on 2 cores);
    the results in the items' order."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(work, items))


def composed(found: Iterable[Project]) -> list[Project]:
    """The projects, each one's `docker-compose config` run ahead, two at a time: Compose takes
    most of a second to start, and Project.config keeps what it printed. A failure is left for
    the check to meet, in its turn."""
    found = list(found)
    in_pairs(_compose_ahead, found)
    return found


def _compose_ahead(project: Project) -> None:
    with contextlib.suppress(StackError, OSError, ValueError):
        project.config()


def described(project: Project) -> str:
    """``dev``, ``dev, ha``, ``dev, local images``, ..."""
    return ", ".join([project.env] + ["ha"] * project.ha + ["local images"] * project.local)


# ---- the checks ------------------------------------------------------------------------


def generated_files(root: Path, work: Path) -> Iterator[Check]:
    stale = drift(root)
    yield Check(
        "generated files are up to date",
        [f"{p.relative_to(root)} differs: run `make generate`" for p in stale],
    )


def yaml_files(root: Path, work: Path) -> Iterator[Check]:
    folders = ["compose", "prometheus", "alertmanager", "grafana", "exporters", "blackbox",
               ".env.example"]  # fmt: skip
    args = [str(Path(sys.executable).parent / "yamllint"), "-c", str(root / ".yamllint.yaml")]
    out = run([*args, *[f for f in folders if f != ".env.example"]], cwd=root)
    yield Check("yamllint", [out] if out else [])


def prometheus_configs(root: Path, work: Path) -> Iterator[Check]:
    for env in ENVIRONMENTS:
        run_dir = stand_in_run_dir(env, work, root)
        for ha in (False, True):
            name = prometheus_file(env, ha)
            source = root / "prometheus" / "generated" / name
            text = source.read_text()
            out = config_check(root, PROMETHEUS_CHECK, work / name, text, run_dir / "secrets")
            yield Check(
                f"promtool check config ({env}{', ha' if ha else ''})", [out] if out else []
            )


def longest_lookback(root: Path, names: Iterable[str]) -> tuple[float, str]:
    """The furthest back (seconds) any rule of the files ``names`` (in
    prometheus/generated/rules/) reads, and which rule that is."""
    longest, where = 0.0, "no rule"
    for name in names:
        path = root / LOADED / name
        for group in read_rules(path)["groups"]:
            for rule in group["rules"]:
                if lookback(rule["expr"]) > longest:
                    longest = lookback(rule["expr"])
                    where = f"{path.relative_to(root)}: {rule.get('record') or rule.get('alert')}"
    return longest, where


def _retention_problems(root: Path, variable: str, ha: bool, advice: str) -> tuple[float, list]:
    """Each environment's ``variable`` against the furthest back the rules its topology's
    Prometheus loads read."""
    problems, furthest = [], 0.0
    for env in ENVIRONMENTS:
        source = root / "prometheus" / "generated" / prometheus_file(env, ha)
        longest, where = longest_lookback(root, vmalert.loaded(load_yaml(source.read_text()), root))
        furthest = max(furthest, longest)
        kept = environment_settings(env, root).get(variable, "")
        try:
            enough = seconds(kept) > longest
        except ValueError as exc:
            problems.append(f"compose/env/{env}.env: {variable}: {exc}")
            continue
        if not enough:
            problems.append(
                f"compose/env/{env}.env: {variable}={kept} does not cover {where}, which reads "
                f"{longest / 86400:g} d back ({advice})"
            )
    return furthest, problems


def ha_retention(root: Path, work: Path) -> Iterator[Check]:
    """In the HA topology each Prometheus replica keeps HA_RETENTION_TIME of its own data:
    longer than any rule it loads reads back (the rules that read further run in vmalert on
    the global view, stack/vmalert.py)."""
    advice = "raise it, or evaluate that rule file on the global view: vmalert, docs/stack.md"
    longest, problems = _retention_problems(root, "HA_RETENTION_TIME", True, advice)
    yield Check(
        f"HA retention longer than the replicas' longest rule range ({longest / 86400:g} d)",
        problems,
    )


def single_retention(root: Path, work: Path) -> Iterator[Check]:
    """In the single topology Prometheus evaluates every rule, the anomaly baselines
    included: RETENTION_TIME must reach as far back as they read, or they never fill."""
    advice = "raise it; RETENTION_SIZE still bounds the disk"
    longest, problems = _retention_problems(root, "RETENTION_TIME", False, advice)
    yield Check(f"retention longer than the longest rule range ({longest / 86400:g} d)", problems)


def global_rules(root: Path, work: Path) -> Iterator[Check]:
    """The HA topology evaluates each rule file once, those of vmalert on the global view with
    its clients' addresses, users and labels (stack/vmalert.py); vmalert accepts its files
    (``vmalert -dryRun``: its MetricsQL parser and templates, Debian's 1.79)."""
    files: dict[str, None] = {}
    for project in composed(projects(root, work)):
        source = root / "prometheus" / "generated" / prometheus_file(project.env, project.ha)
        problems = vmalert.problems(project, load_yaml(source.read_text()))
        yield Check(f"rules on the global view ({described(project)})", problems)
        if project.ha and vmalert.SERVICE in project.services():
            files.update(dict.fromkeys(vmalert.evaluated(project.services()[vmalert.SERVICE])))
    binary = records()[vmalert.SERVICE].binary or vmalert.SERVICE
    outs = [run([binary, "-dryRun", f"-rule={root / LOADED / name}"]) for name in files]
    yield Check(f"vmalert -dryRun ({', '.join(files) or 'no file'})", [o for o in outs if o])


def rules(root: Path, work: Path) -> Iterator[Check]:
    """The rules and tests as Prometheus and promtool read them: prometheus/generated/rules/."""
    files = rule_files(root, LOADED)
    out = run([tool(root, "promtool"), "check", "rules", *map(str, files)])
    yield Check("promtool check rules", [out] if out else [])
    yield Check("alerts: severity, summary, description, runbook page", alert_problems(root))
    tests = rule_test_files(root, LOADED)
    promtool = tool(root, "promtool")
    # one promtool a file: the files take 0.1 to 6 s each
    outs = in_pairs(lambda t: run([promtool, "test", "rules", t.name], cwd=t.parent), tests)
    failed = [out for out in outs if out]
    yield Check(f"promtool test rules ({len(tests)} files)", failed)


def alert_windows(root: Path, work: Path) -> Iterator[Check]:
    """Each ``for:`` against its job's scrapes; histogram thresholds against their buckets."""
    yield Check(
        f"alerts: every for: spans {alert_checks.MIN_SCRAPES} scrapes of its job in every env",
        alert_checks.too_short(root),
    )
    yield Check("rules: histogram thresholds are bucket boundaries", alert_checks.off_bucket(root))


def alertmanager_configs(root: Path, work: Path) -> Iterator[Check]:
    cases = load_yaml((root / "alertmanager" / "tests" / "routes.yml").read_text())
    for env in ENVIRONMENTS:
        # the stand-in .run/<env>/alertmanager.yml: filled from .env.example, as `make up` would
        run_dir = stand_in_run_dir(env, work, root)
        config = work / f"alertmanager.{env}.yml"
        text = (run_dir / "alertmanager.yml").read_text()
        out = config_check(root, ALERTMANAGER_CHECK, config, text, run_dir / "secrets")
        yield Check(f"amtool check-config ({env})", [out] if out else [])
        problems = [p for p in in_pairs(functools.partial(_route_test, root, config), cases) if p]
        yield Check(f"amtool config routes test ({env}, {len(cases)} cases)", problems)


def _route_test(root: Path, config: Path, case: dict) -> str:
    """What is wrong with one routing case (alertmanager/tests/routes.yml), or nothing."""
    labels = [f"{k}={v}" for k, v in case["labels"].items()]
    out = run(
        [
            tool(root, "amtool"),
            "config",
            "routes",
            "test",
            f"--config.file={config}",
            f"--verify.receivers={','.join(case['receivers'])}",
            *labels,
        ]
    )
    return f"{' '.join(labels)}: expected {case['receivers']}\n{out}" if out else ""


def compose_files(root: Path, work: Path) -> Iterator[Check]:
    files = sorted((root / "compose").glob("compose*.yaml"))
    checker = str(Path(sys.executable).parent / "check-jsonschema")
    out = run([checker, "--builtin-schema", "vendor.compose-spec", *map(str, files)])
    yield Check(f"check-jsonschema compose-spec ({len(files)} files)", [out] if out else [])
    found = list(projects(root, work, local_too=True))
    for project, out in zip(found, in_pairs(_compose_config, found), strict=True):
        yield Check(f"docker-compose config ({described(project)})", [out] if out else [])


def _compose_config(project: Project) -> str:
    args = [COMPOSE, *project.compose_args(), "config", "-q"]
    return run(args, cwd=project.root, env=project.environ())


def containers(root: Path, work: Path) -> Iterator[Check]:
    """Every service hardened, or the reason why not (stack/hardening.py)."""
    for project in composed(projects(root, work, local_too=True)):
        stated = hardening.stated_exceptions(project.files())
        problems = hardening.problems(project.services(), stated)
        yield Check(f"container hardening ({described(project)})", problems)


def ports_agree(root: Path, work: Path) -> Iterator[Check]:
    """Each container port repeated in a healthcheck, a published port, a scrape target or a
    ``service:port`` address is the one its service exposes (stack/ports.py), in every
    environment."""
    problems: dict[str, None] = {}  # in order, each once: most are common to the environments
    for project in composed(projects(root, work)):
        problems.update(dict.fromkeys(ports.problems(project)))
    yield Check("container ports agree with each service's expose", list(problems))


def web_authentication(root: Path, work: Path) -> Iterator[Check]:
    """Prometheus, Alertmanager and the exporters behind the web configuration `make up`
    writes, every client with the monitoring user (stack/webauth.py)."""
    for project in composed(projects(root, work)):
        source = root / "prometheus" / "generated" / prometheus_file(project.env, project.ha)
        problems = hardening.auth_problems(project, source.read_text())
        web = project.run_dir / webauth.WEB_CONFIG
        out = run([tool(root, "promtool"), "check", "web-config", str(web)])
        mode = webauth.mode(project.env, root)
        yield Check(f"web authentication ({described(project)}, {mode})",
                    problems + ([out] if out else []))  # fmt: skip


def long_term_store(root: Path, work: Path) -> Iterator[Check]:
    """VictoriaMetrics in the HA topology alone: its dedup, retention and monitoring user,
    the replicas' remote_write, Grafana's global view (stack/longterm.py)."""
    for project in composed(projects(root, work)):
        source = root / "prometheus" / "generated" / prometheus_file(project.env, project.ha)
        problems = longterm.problems(project, source.read_text())
        yield Check(f"long-term store ({described(project)})", problems)


PEER_TIMEOUT = "--cluster.peer-timeout"
DEFAULT_PEER_TIMEOUT = "15s"  # Alertmanager's


def alertmanager_turns(root: Path, work: Path) -> Iterator[Check]:
    """In the HA topology each Alertmanager peer waits its place in the cluster times the peer
    timeout, then sends what no peer before it has logged as sent. The last peer's turn must
    come before the group's next tick (GROUP_INTERVAL): else a newer state goes out meanwhile
    and the late peer sends the one it saw, a "firing" after the "resolved"
    (prometheus/alertmanager#2447)."""
    for project in composed(p for p in projects(root, work) if p.ha):
        services = project.services()
        peers = sorted(n for n in services if n.partition("-")[0] == "alertmanager")
        interval = environment_settings(project.env, root).get("GROUP_INTERVAL", "")
        problems = []
        for name in peers:
            flags = dict(a.partition("=")[::2] for a in services[name].get("command") or [])
            timeout = flags.get(PEER_TIMEOUT, DEFAULT_PEER_TIMEOUT)
            last = (len(peers) - 1) * seconds(timeout)
            if last >= seconds(interval):
                problems.append(
                    f"{name}: the last of {len(peers)} peers sends {last:g} s after a tick "
                    f"({PEER_TIMEOUT}={timeout}), not before GROUP_INTERVAL={interval}: lower "
                    f"ALERTMANAGER_PEER_TIMEOUT in compose/env/{project.env}.env"
                )
        if not peers:
            problems.append("no Alertmanager peer")
        yield Check(f"Alertmanager peers send within a group interval ({described(project)})",
                    problems)  # fmt: skip


def dashboards(root: Path, work: Path) -> Iterator[Check]:
    problems: list[str] = []
    datasources = load_yaml(
        (root / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    if len(datasources) != 1 or not datasources[0].get("uid"):
        problems.append("provisioning: expected one datasource, with a uid")
    source_uid = str(datasources[0].get("uid")) if datasources else ""
    uids: dict[str, Path] = {}
    exprs: list[tuple[str, str]] = []
    alert_runbooks = runbooks.alert_runbooks(root)
    files = sorted((root / "grafana" / "dashboards").rglob("*.json"))
    for path in files:
        where = path.relative_to(root)
        try:
            board = json.loads(path.read_text())
        except ValueError as exc:
            problems.append(f"{where}: not JSON: {exc}")
            continue
        problems += [f"{where}: {p}" for p in dashboard_problems(board, source_uid)]
        problems += [f"{where}: {p}" for p in link_problems(board, alert_runbooks, root)]
        uid = board.get("uid")
        if uid in uids:
            problems.append(f"{where}: uid {uid!r} already used by {uids[uid]}")
        uids[uid] = where
        exprs += [(f"{where} panel {title!r}", e) for title, e in expressions(board)]
    out = check_expressions(root, work, exprs)
    yield Check(f"dashboards ({len(files)} files, {len(exprs)} queries)", problems + out)


def dashboard_problems(board: dict, uid: str) -> list[str]:
    """``uid``: the provisioned datasource's, which every query must use."""
    problems = []
    if not board.get("uid"):
        problems.append("no uid")
    if "__inputs" in board:
        problems.append("__inputs present (breaks file provisioning)")
    for variable in board.get("templating", {}).get("list", []):
        source = variable.get("datasource")
        if variable.get("type") == "query" and (not source or source.get("uid") != uid):
            problems.append(f"variable {variable.get('name')!r}: datasource is not uid {uid!r}")
    boxes: list[tuple[str, tuple[int, int, int, int]]] = []
    for panel in panels(board):
        title = panel.get("title", "?")
        if panel.get("type") == "row":
            continue
        sources = [panel.get("datasource")] + [t.get("datasource") for t in panel["targets"]]
        if any(not s or s.get("uid") != uid for s in sources):
            problems.append(f"panel {title!r}: datasource is not uid {uid!r}")
        if not panel.get("description"):
            problems.append(f"panel {title!r}: no description")
        if not panel.get("fieldConfig", {}).get("defaults", {}).get("unit"):
            problems.append(f"panel {title!r}: no unit")
        grid = panel.get("gridPos", {})
        box = tuple(grid.get(k, 0) for k in "xywh")
        for other, obox in boxes:
            if _overlap(box, obox):
                problems.append(f"panel {title!r} overlaps panel {other!r}")
        boxes.append((title, box))  # type: ignore[arg-type]
    return problems


def link_problems(board: dict, alert_runbooks: dict[str, str], root: Path) -> list[str]:
    """A panel that names alerts links each one's runbook; every link reaches a runbook page."""
    problems = []
    for panel in panels(board):
        title = panel.get("title", "?")
        urls = [link.get("url", "") for link in panel.get("links", [])]
        for alert in runbooks.named_alerts(panel.get("description", ""), alert_runbooks):
            if alert_runbooks[alert] not in urls:
                problems.append(f"panel {title!r}: names {alert} but does not link its runbook")
        for url in urls:
            target = runbooks.page(url, root)
            if target is None or not target.is_file():
                problems.append(f"panel {title!r}: link {url} is not a runbook page")
    return problems


def expressions(board: dict) -> Iterator[tuple[str, str]]:
    for panel in panels(board):
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield panel.get("title", "?"), target["expr"]
    for variable in board.get("templating", {}).get("list", []):
        query = variable.get("definition", "")
        match = re.fullmatch(r"label_values\((.*),\s*\w+\)", query)
        if match:
            yield f"variable {variable['name']}", match[1]


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


# Grafana's variables, as the values a query gets at run time (for parsing only)
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$component": ".*",
}


def check_expressions(root: Path, work: Path, exprs: list[tuple[str, str]]) -> list[str]:
    """Parse every expression with promtool (as recording rules: the only parser it has)."""
    if not exprs:
        return []
    rules = []
    for i, (_, expr) in enumerate(exprs):
        for name, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(name, value)
        rules.append({"record": f"dashboard_query_{i}", "expr": expr})
    path = work / "dashboard-queries.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    out = run([tool(root, "promtool"), "check", "rules", str(path)])
    if not out:
        return []
    bad = [f"{w}: {e}" for i, (w, e) in enumerate(exprs) if f'dashboard_query_{i}"' in out]
    return [out, *bad]


def metrics_used(root: Path, work: Path) -> Iterator[Check]:
    entries = catalog.entries(root)
    unused = catalog.unused_app_metrics(entries)
    yield Check(
        "every app metric is used by a rule, alert or dashboard, or listed in catalog.ADHOC",
        [f"{name}: used nowhere; use it, or give the reason in stack/catalog.py ADHOC"
         for name in unused],
    )  # fmt: skip
    named = frozenset(runbook_checks.runbook_metrics(root))
    problems = catalog.producer_problems(entries, root, named)
    yield Check("every metric a rule or dashboard reads has a producer", problems)


def runbooks_and_panels(root: Path, work: Path) -> Iterator[Check]:
    """Each runbook page with its sections; every metric a runbook or a panel names exists
    (stack/runbook_checks.py)."""
    metrics = runbook_checks.known_metrics(root)
    sections, names = runbook_checks.runbook_problems(root, metrics)
    yield Check(f"runbooks: {', '.join(runbook_checks.SECTIONS)} on every page", sections)
    names += runbook_checks.panel_problems(root, metrics)
    yield Check("runbooks and panels name only metrics that exist", names)


CHECKS: list[Callable[[Path, Path], Iterator[Check]]] = [
    generated_files,
    metrics_used,
    runbooks_and_panels,
    yaml_files,
    prometheus_configs,
    ha_retention,
    single_retention,
    rules,
    alert_windows,
    alertmanager_configs,
    compose_files,
    containers,
    ports_agree,
    web_authentication,
    long_term_store,
    alertmanager_turns,
    global_rules,
    dashboards,
]


# ---- Compose invocation (shared with compose.py) ------------------------------------------


def preflight(env: str, topology: str = "single", *, root: Path = ROOT, say=print) -> Path:
    """Everything `make up` checks before it starts anything; returns .run/<env>."""
    check_environment(env)
    stale = drift(root)
    if stale:
        names = ", ".join(str(p.relative_to(root)) for p in stale)
        raise StackError(f"generated files are out of date ({names}): run `make generate`")
    runs = run_root() if root == ROOT else root / ".run"
    run_dir = prepare(env, resolve(env, dotenv_path()), runs / env, root)
    say(f"secrets and alertmanager.yml for {env}: {run_dir}/")
    with tempfile.TemporaryDirectory(prefix="stack-preflight-") as tmp:
        secrets_dir = run_dir / "secrets"
        prometheus = root / "prometheus" / "generated" / prometheus_file(env, topology == "ha")
        alertmanager = run_dir / "alertmanager.yml"
        for name, source, command in (
            ("prometheus", prometheus, PROMETHEUS_CHECK),
            ("alertmanager", alertmanager, ALERTMANAGER_CHECK),
        ):
            copy = Path(tmp) / f"{name}.yml"
            out = config_check(root, command, copy, source.read_text(), secrets_dir)
            if out:
                raise StackError(f"{name} configuration for {env} is invalid:\n{out}")
            say(f"{name} configuration for {env}: valid ({command[0]})")
    return run_dir


def _guarded(check: Callable[[Path, Path], Iterator[Check]], root: Path, work: Path):
    """A check's results; a StackError or unreadable file becomes a failed result."""
    try:
        yield from check(root, work)
    except (StackError, OSError, ValueError) as exc:
        yield Check(check.__name__.replace("_", " "), [str(exc)])


def lint(root: Path = ROOT, out=sys.stdout) -> int:
    """Run every check; print one line each, the tool's message under a failed one."""
    failed = 0
    with tempfile.TemporaryDirectory(prefix="stack-lint-") as tmp:
        for check in CHECKS:
            for result in _guarded(check, root, Path(tmp)):
                mark = "FAIL" if result.problems else "ok  "
                print(f"  {mark} {result.name}", file=out, flush=True)
                for problem in result.problems:
                    print("       " + problem.replace("\n", "\n       "), file=out)
                failed += bool(result.problems)
    print(f"lint: {failed} check(s) failed" if failed else "lint: all checks passed", file=out)
    return 1 if failed else 0
