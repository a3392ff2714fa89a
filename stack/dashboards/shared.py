"""What every dashboard shares, built with grafana-foundation-sdk: the provisioned datasource,
the panel kinds with their defaults, the runbook links and the layout.

Every panel gets the provisioned datasource (uid ``prometheus``), a unit and a description;
a panel whose description names alerts links their runbooks (the alerts' own runbook_url).
Panels are laid out left to right in rows of 24 columns, so none overlap.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus
from grafana_foundation_sdk.builders import stat as sdk_stat
from grafana_foundation_sdk.builders import table as sdk_table
from grafana_foundation_sdk.builders import timeseries as sdk_timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from .. import ROOT, runbooks
from ..yamlfile import load_yaml

PROVISIONED = ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROMETHEUS = ROOT / "prometheus" / "prometheus.yml"


def provisioned_uid(path: Path = PROVISIONED) -> str:
    """The uid the provisioning file gives the one datasource: its one home."""
    return str(load_yaml(path.read_text())["datasources"][0]["uid"])


DATASOURCE_UID = provisioned_uid()
DATASOURCE = common.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
API = 'job="personal_assistant_api"'
GRID_WIDTH = 24

Panel = sdk_stat.Panel | sdk_timeseries.Panel | sdk_table.Panel
Query = tuple[str, str]  # (expression, legend)
PanelT = TypeVar("PanelT", sdk_stat.Panel, sdk_timeseries.Panel, sdk_table.Panel)


def scrape_interval(job: str, path: Path = PROMETHEUS) -> str | None:
    """A scrape job's own ``scrape_interval`` in prometheus/prometheus.yml (its one home; the
    HA topology's own jobs: ha.yml beside it), or None when it scrapes at the global interval:
    the datasource's ``timeInterval``."""
    jobs = [
        j
        for p in (path, path.parent / "ha.yml")
        for j in load_yaml(p.read_text())["scrape_configs"]
    ]
    found = next(j for j in jobs if j["job_name"] == job)
    return found.get("scrape_interval")


def query(expr: str, legend: str, ref_id: str, step: str | None = None) -> prometheus.Dataquery:
    """``step``: the query's min step, for a job scraped more slowly than the global interval;
    Grafana then computes ``$__rate_interval`` from it (at least four of its scrapes) instead
    of from the datasource's ``timeInterval``."""
    target = (
        prometheus.Dataquery()
        .ref_id(ref_id)
        .datasource(DATASOURCE)
        .expr(expr)
        .legend_format(legend)
    )
    return target.interval(step) if step else target


# The panel kinds. Where Grafana's schema has no default the SDK writes a zero value (a hidden
# legend, no reducer, tooltips sorted ascending): the options set below are Grafana's defaults.


def stat(
    title: str, expr: str, unit: str, description: str, width: int = 6, step: str | None = None
) -> Panel:
    return (
        _describe(sdk_stat.Panel(), title, unit, description)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
        .with_target(query(expr, "", "A", step))
        .span(width)
        .height(4)
    )


def graph(
    title: str,
    unit: str,
    description: str,
    *queries: Query,
    width: int = 12,
    step: str | None = None,
    lines: tuple[float, ...] = (),
) -> Panel:
    """A time series panel; ``lines``: dashed threshold lines at these values (an alert's
    thresholds), the axis stretched to show the highest."""
    panel = (
        _describe(sdk_timeseries.Panel(), title, unit, description)
        .legend(
            common_builders.VizLegendOptions()
            .show_legend(True)
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
        )
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.SINGLE)
            .sort(common.SortOrder.NONE)
        )
        .span(width)
        .height(8)
    )
    for index, (expr, legend) in enumerate(queries):
        panel.with_target(query(expr, legend, chr(ord("A") + index), step))
    if lines:
        if len(lines) > len(_COLOURS):
            raise ValueError(f"at most {len(_COLOURS)} threshold lines")
        steps = [model.Threshold(value=None, color="green")]
        steps += [model.Threshold(value=v, color=c) for v, c in zip(sorted(lines), _COLOURS)]  # noqa: B905
        panel.thresholds(
            dashboard_builders.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(steps)
        )
        panel.thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(
                common.GraphThresholdsStyleMode.DASHED
            )
        ).axis_soft_max(max(lines))
    return panel


_COLOURS = ("yellow", "orange", "red", "dark-red", "purple")  # the lowest line first


def instant_table(title: str, expr: str, unit: str, description: str) -> Panel:
    """One instant query shown as a table (its value at the end of the range)."""
    target = query(expr, "", "A").instant().format(PromQueryFormat.TABLE)
    return (
        _describe(sdk_table.Panel(), title, unit, description)
        .with_target(target)
        .span(12)
        .height(8)
    )


def _describe(panel: PanelT, title: str, unit: str, description: str) -> PanelT:
    return panel.title(title).unit(unit).description(description).datasource(DATASOURCE)


def label_variable(
    name: str, label: str, metric: str, label_name: str, *, one: bool = False
) -> dashboard_builders.QueryVariable:
    """A multi-value variable over one label's values, "All" by default; ``one``: a single
    value, the first (what must not be summed across its values: one host's cores)."""
    values = f"label_values({metric}, {label_name})"
    variable = (
        dashboard_builders.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query({"query": values, "refId": name})
        .definition(values)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
    )
    if one:
        return variable.include_all(False).multi(False)
    return (
        variable.include_all(True)
        .multi(True)
        .all_value(".*")
        .current(model.VariableOption(text="All", value="$__all"))
    )


def runbook_links(
    description: str, alert_runbooks: dict[str, str]
) -> list[dashboard_builders.DashboardLink]:
    """One link per runbook of the alerts a description names, titled with those alerts."""
    by_url: dict[str, list[str]] = {}
    for alert in runbooks.named_alerts(description, alert_runbooks):
        by_url.setdefault(alert_runbooks[alert], []).append(alert)
    return [
        dashboard_builders.DashboardLink(f"Runbook: {', '.join(alerts)}")
        .url(url)
        .target_blank(True)
        for url, alerts in by_url.items()
    ]


def dashboard(
    uid: str,
    title: str,
    description: str,
    tag: str,
    panels: list[Panel],
    variables: tuple[dashboard_builders.QueryVariable, ...] = (),
) -> dict[str, Any]:
    """The dashboard's JSON model: panels numbered, linked to their runbooks and placed."""
    board = (
        dashboard_builders.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["assistant", tag])
        .readonly()
        .version(1)
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("utc")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .variables(list(variables))
        .annotations([])
        .links([])
    )
    alert_runbooks = runbooks.alert_runbooks()
    for number, (panel, position) in enumerate(zip(panels, _layout(panels), strict=True), 1):
        links = runbook_links(panel.build().description or "", alert_runbooks)
        board.with_panel(panel.id(number).links(links).grid_pos(position))
    return json.loads(json.dumps(board.build(), cls=JSONEncoder))


def _layout(panels: list[Panel]) -> list[model.GridPos]:
    """Left to right; a panel that does not fit in the row starts the next one."""
    positions, x, y, row_height = [], 0, 0, 0
    for panel in panels:
        size = panel.build().grid_pos or model.GridPos()
        if x + size.w > GRID_WIDTH:
            x, y, row_height = 0, y + row_height, 0
        positions.append(model.GridPos(h=size.h, w=size.w, x=x, y=y))
        x, row_height = x + size.w, max(row_height, size.h)
    return positions


def panels(board: dict) -> Iterator[dict]:
    """A dashboard JSON's panels, those inside collapsed rows too."""
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])
