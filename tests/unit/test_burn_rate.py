"""The SLO burn-rate alarms of template.yaml, evaluated on synthetic per-minute ProbeSuccess series.

A tiny evaluator for exactly the CloudWatch features the burn-rate alarms use: the Average of one metric over a
sliding window of the alarm's period, arithmetic on it (+ - * / and parentheses), the alarm's comparison with
its threshold, TreatMissingData, and composite rules ``ALARM(a) AND ALARM(b)``. Expressions, periods,
thresholds and the SLO are read from the template (the SLO from the SloTargetPct parameter), never restated;
anything else in an expression fails the evaluator, so a template change it cannot follow fails these tests.
"""

from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

import pytest
from samcli.yamlhelper import yaml_parse

ROOT = Path(__file__).resolve().parents[1].parent
TEMPLATE = yaml_parse((ROOT / "template.yaml").read_text())
RESOURCES = TEMPLATE["Resources"]
COMPARE = {"GreaterThanThreshold": operator.gt, "GreaterThanOrEqualToThreshold": operator.ge,
           "LessThanThreshold": operator.lt, "LessThanOrEqualToThreshold": operator.le}  # fmt: skip
MINUTES_30_DAYS = 30 * 24 * 60
TARGETS = 5  # probes per run: one sample per target per minute


def substitute(value, overrides: dict[str, str]) -> str:
    """A string or ``!Sub`` string with the stack parameters' values (defaults unless overridden)."""
    if isinstance(value, str):
        return value
    text = value["Fn::Sub"]

    def parameter(match: re.Match) -> str:
        name = match.group(1)
        return str(overrides.get(name, TEMPLATE["Parameters"][name]["Default"]))

    return re.sub(r"\$\{(\w+)\}", parameter, text)


_OPERATIONS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def evaluate(expression: str, variables: dict[str, float]) -> float:
    """Metric-math arithmetic: numbers, the query ids in ``variables``, + - * /, unary minus, parentheses."""

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATIONS:
            return _OPERATIONS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return float(node.value)
        if isinstance(node, ast.Name) and node.id in variables:
            return variables[node.id]
        raise ValueError(f"not metric math this evaluator knows: {ast.unparse(node)!r} in {expression!r}")

    return walk(ast.parse(expression, mode="eval"))


class Series:
    """Per-minute ProbeSuccess samples (each minute: the 0/1 values of that minute's probes; [] = no run)."""

    def __init__(self, minutes: list[list[int]]) -> None:
        self.minutes = minutes
        self.sums = [0, *accumulate(sum(samples) for samples in minutes)]
        self.counts = [0, *accumulate(len(samples) for samples in minutes)]

    def average(self, end: int, period_minutes: int) -> float | None:
        """The Average statistic over the minutes (end - period, end]; None when no sample fell in it."""
        start = max(0, end + 1 - period_minutes)
        count = self.counts[end + 1] - self.counts[start]
        return None if count == 0 else (self.sums[end + 1] - self.sums[start]) / count

    def __add__(self, other: Series) -> Series:
        return Series(self.minutes + other.minutes)


def steady(minutes: int, every: int | None = None, targets: int = TARGETS) -> Series:
    """``minutes`` of ``targets`` probes a minute where every ``every``-th sample fails (None: none fails)."""
    samples = []
    position = 0
    for _ in range(minutes):
        minute = []
        for _ in range(targets):
            position += 1
            minute.append(0 if every and position % every == 0 else 1)
        samples.append(minute)
    return Series(samples)


def outage(minutes: int, targets: int = TARGETS) -> Series:
    return Series([[0] * targets for _ in range(minutes)])


def gap(minutes: int) -> Series:
    return Series([[] for _ in range(minutes)])


@dataclass(frozen=True)
class WindowAlarm:
    name: str
    period_minutes: int
    expression: str
    metric_id: str
    threshold: float
    compare: callable
    missing: str

    @classmethod
    def from_template(cls, name: str, overrides: dict[str, str] | None = None) -> WindowAlarm:
        props = RESOURCES[name]["Properties"]
        assert props["EvaluationPeriods"] == 1 and props.get("DatapointsToAlarm", 1) == 1, "evaluator: 1 of 1 only"
        (returned,) = [q for q in props["Metrics"] if q.get("ReturnData")]
        (stat,) = [q for q in props["Metrics"] if "MetricStat" in q]
        assert stat["MetricStat"]["Stat"] == "Average" and stat["MetricStat"]["Metric"]["MetricName"] == "ProbeSuccess"
        assert stat["MetricStat"]["Period"] % 60 == 0
        return cls(
            name=name,
            period_minutes=stat["MetricStat"]["Period"] // 60,
            expression=substitute(returned["Expression"], overrides or {}),
            metric_id=stat["Id"],
            threshold=float(props["Threshold"]),
            compare=COMPARE[props["ComparisonOperator"]],
            missing=props["TreatMissingData"],
        )

    def value(self, series: Series, minute: int, period_minutes: int | None = None) -> float | None:
        average = series.average(minute, period_minutes or self.period_minutes)
        return None if average is None else evaluate(self.expression, {self.metric_id: average})

    def breaching(self, series: Series, minute: int) -> bool:
        value = self.value(series, minute)
        if value is None:
            assert self.missing in ("notBreaching", "breaching"), f"evaluator: TreatMissingData {self.missing}"
            return self.missing == "breaching"
        return self.compare(value, self.threshold)


@dataclass(frozen=True)
class Composite:
    name: str
    windows: tuple[WindowAlarm, ...]

    @classmethod
    def from_template(cls, name: str, overrides: dict[str, str] | None = None) -> Composite:
        rule = RESOURCES[name]["Properties"]["AlarmRule"]["Fn::Sub"]
        term = r'ALARM\("\$\{(\w+)\}"\)'
        assert re.fullmatch(rf"{term}( AND {term})*", rule), f"evaluator: AND of ALARM() only, not {rule!r}"
        return cls(name, tuple(WindowAlarm.from_template(w, overrides) for w in re.findall(r"\$\{(\w+)\}", rule)))

    @property
    def long(self) -> WindowAlarm:
        return max(self.windows, key=lambda window: window.period_minutes)

    @property
    def short(self) -> WindowAlarm:
        return min(self.windows, key=lambda window: window.period_minutes)

    def in_alarm(self, series: Series, minute: int) -> bool:
        return all(window.breaching(series, minute) for window in self.windows)

    def firing_minutes(self, series: Series, start: int = 0) -> list[int]:
        return [minute for minute in range(start, len(series.minutes)) if self.in_alarm(series, minute)]


def composites(overrides: dict[str, str] | None = None) -> dict[str, Composite]:
    names = [name for name, resource in RESOURCES.items() if resource["Type"] == "AWS::CloudWatch::CompositeAlarm"]
    return {name: Composite.from_template(name, overrides) for name in names}


FAST = "SloFastBurnAlarm"
SLOW = "SloSlowBurnAlarm"


def slo() -> float:
    return float(TEMPLATE["Parameters"]["SloTargetPct"]["Default"]) / 100


def detection_minutes(window: WindowAlarm, error_rate: float) -> int:
    """Minutes of ``error_rate`` after a clean window until the window's burn rate exceeds its threshold."""
    budget_minutes = window.threshold * (1 - slo()) * window.period_minutes / error_rate
    return int(budget_minutes) + 1


# --------------------------------------------------------------------------- the evaluator itself


def test_the_template_has_a_fast_and_a_slow_pair_of_windows():
    pairs = composites()
    assert set(pairs) == {FAST, SLOW}
    for pair in pairs.values():
        assert len(pair.windows) == 2 and pair.long.period_minutes == 12 * pair.short.period_minutes
        assert pair.long.threshold == pair.short.threshold
    assert (pairs[FAST].long.period_minutes, pairs[FAST].short.period_minutes) == (60, 5)
    assert (pairs[SLOW].long.period_minutes, pairs[SLOW].short.period_minutes) == (360, 30)
    assert pairs[FAST].long.threshold > pairs[SLOW].long.threshold


def test_the_evaluator_refuses_metric_math_it_does_not_know():
    assert evaluate("(1 - m) / (1 - 99.9 / 100)", {"m": 0.999}) == pytest.approx(1.0)
    for expression in ("FILL(m, 1)", "m ** 2", "IF(m > 1, 1, 0)", "x + 1"):
        with pytest.raises(ValueError, match="not metric math"):
            evaluate(expression, {"m": 1.0})


def test_the_window_average_is_over_the_samples_of_the_period():
    series = steady(10) + outage(1) + steady(4)
    assert series.average(14, 5) == pytest.approx(20 / 25)
    assert series.average(14, 4) == 1.0
    assert gap(3).average(2, 5) is None


# --------------------------------------------------------------------------- the burn rate


def test_thirty_days_at_exactly_the_slo_burn_at_rate_one():
    every = round(1 / (1 - slo()))  # one failed sample in every 1000 at 99.9 %
    series = steady(MINUTES_30_DAYS, every=every)
    assert series.average(MINUTES_30_DAYS - 1, MINUTES_30_DAYS) == pytest.approx(slo())
    for pair in composites().values():
        for window in pair.windows:
            burn = window.value(series, MINUTES_30_DAYS - 1, period_minutes=MINUTES_30_DAYS)
            assert burn == pytest.approx(1.0), window.name


def test_spending_the_budget_evenly_never_pages_though_a_short_window_alone_would():
    """At exactly the SLO a failed probe lands in a 5-minute window now and then, far above 14.4x for those
    5 minutes: the long window of the pair is what keeps that quiet."""
    series = steady(MINUTES_30_DAYS, every=round(1 / (1 - slo())))
    for pair in composites().values():
        assert pair.firing_minutes(series) == [], pair.name
    fast = composites()[FAST]
    assert any(fast.short.breaching(series, minute) for minute in range(0, MINUTES_30_DAYS, 7))


def test_a_total_outage_trips_the_fast_burn_pair_within_its_detection_time():
    healthy = 24 * 60
    series = steady(healthy) + outage(120)
    for name, pair in composites().items():
        expected = max(detection_minutes(window, 1.0) for window in pair.windows)
        first = pair.firing_minutes(series, start=healthy)[0]
        assert first == healthy + expected - 1, name  # the minute whose run makes it `expected` failing minutes
    # docs/operations.md: at 99.9 % a total outage pages (fast burn) after 1 failing minute, warns (slow) after 3.
    assert detection_minutes(composites()[FAST].long, 1.0) == 1
    assert max(detection_minutes(w, 1.0) for w in composites()[SLOW].windows) == 3


def test_a_one_percent_error_rate_trips_the_slow_burn_but_not_the_fast_one():
    healthy = 24 * 60
    series = steady(healthy) + steady(24 * 60, every=100)
    pairs = composites()
    assert pairs[FAST].firing_minutes(series) == []
    slow = pairs[SLOW].firing_minutes(series, start=healthy)
    assert slow, "a 1 % error rate (10x the budget rate) must warn"
    expected = max(detection_minutes(window, 0.01) for window in pairs[SLOW].windows)
    spacing = 100 // TARGETS  # minutes between two failed samples: the error rate arrives in steps
    assert abs(slow[0] - (healthy + expected - 1)) <= spacing
    assert slow[0] - healthy <= pairs[SLOW].long.period_minutes


def test_an_error_rate_within_budget_trips_nothing():
    """Twice the budget rate (0.2 % at 99.9 %): the budget lasts 15 days, no page and no warning."""
    series = steady(24 * 60) + steady(2 * 24 * 60, every=round(1 / (2 * (1 - slo()))))
    for pair in composites().values():
        assert pair.firing_minutes(series) == [], pair.name


def test_one_target_failing_one_run_trips_nothing():
    series = steady(24 * 60) + Series([[0] + [1] * (TARGETS - 1)]) + steady(24 * 60)
    for pair in composites().values():
        assert pair.firing_minutes(series) == [], pair.name


def test_the_fast_pair_recovers_with_its_short_window():
    healthy, down, after = 24 * 60, 30, 120
    series = steady(healthy) + outage(down) + steady(after)
    fast = composites()[FAST]
    last = fast.firing_minutes(series, start=healthy)[-1]
    recovered = healthy + down  # the first healthy minute
    assert last == recovered + fast.short.period_minutes - 2  # the short window still holds one failed minute
    assert fast.long.breaching(series, last + 1), "the long window alone is still high: it would keep paging"


def test_a_gap_in_the_probes_is_not_an_error():
    """No probe result (the schedule disabled, a failed run): no burn; the function-errors alarm reports a
    failing ProbeFunction."""
    series = steady(24 * 60) + gap(8 * 60) + steady(60)
    for pair in composites().values():
        assert pair.firing_minutes(series) == [], pair.name
        assert all(window.missing == "notBreaching" for window in pair.windows)


def test_the_slo_parameter_sets_the_budget():
    """With SloTargetPct=99 a 1 % error rate is exactly the budget: burn 1.0 (it is 10 at the default)."""
    series = steady(24 * 60, every=100)
    end = 24 * 60 - 1
    lenient = composites({"SloTargetPct": "99"})[FAST].long
    assert lenient.value(series, end, period_minutes=24 * 60) == pytest.approx(1.0)
    assert composites()[FAST].long.value(series, end, period_minutes=24 * 60) == pytest.approx(0.01 / (1 - slo()))
