"""Customer value and behaviour: RFM, churn risk, predicted value and cross-sell.

Pure computation over the plaintext facts the gateway hands out (``Gateway.behaviour``):
no database, no keys. The method is written down for customers and staff in
docs/analytics-scores.md and, short, in :data:`LOGIC` (the "meaningful information about
the logic involved" of GDPR Art. 15(1)(h), carried in every subject export).

Churn model: scikit-learn's ``GradientBoostingClassifier`` (Friedman's gradient boosting
of shallow regression trees). It is trained on the deployment's own history: features as
they stood ``HORIZON_DAYS`` ago, labelled by whether the person showed any activity since
(a deal, an interaction or a case). It then scores every person's features as they stand
today. A quarter of the training people are held out and the ROC AUC on them is reported
with every run.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Imported where the scoring runs, not here: the labels and texts of this module are
    # read by every page, and numpy with scikit-learn would add about 100 MiB to every
    # server worker that never scores anyone.
    import numpy as np
    from sklearn.ensemble import GradientBoostingClassifier

from server.money import to_major

MODEL_VERSION = "rfm-gbc-1"
HORIZON_DAYS = 180  # no activity for this long after the snapshot = churned
VALUE_DAYS = 365  # historical value window and predicted value horizon
MIN_TRAINING = 40  # fewer people (or one class only): no churn model, no churn scores
HOLDOUT = 0.25
SEED = 20
CROSS_SELL_SUPPORT = 5  # a product line is suggested only from at least this many buyers
FEATURES = ("recency_days", "frequency", "monetary", "cases", "interactions")
FEATURE_LABELS = {
    "recency_days": "days since the last deal, interaction or case",
    "frequency": "deals and interactions in the last 12 months",
    "monetary": "won deal value in the last 12 months (in one currency, converted)",
    "cases": "support cases in the last 12 months",
    "interactions": "interactions in the last 12 months",
}
SEGMENTS = (
    "champions",
    "loyal",
    "promising",
    "new",
    "needs_attention",
    "at_risk",
    "hibernating",
)
SEGMENT_LABELS = {
    "champions": "Champions",
    "loyal": "Loyal",
    "promising": "Promising",
    "new": "New",
    "needs_attention": "Needs attention",
    "at_risk": "At risk",
    "hibernating": "Hibernating",
}
LOGIC = (
    "Scores are computed only for people who consented to profiling and did not object. "
    "RFM: recency (days since the last deal, interaction or case), frequency (deals and "
    "interactions in the last 12 months) and monetary value (won deals in the last 12 "
    "months, in one currency: other currencies converted at the organisation's "
    "documented rates, amounts without a rate left out and listed apart) are each "
    "ranked 1-5 against all scored customers; the segment follows from the three ranks. "
    "Churn risk: the probability of no activity in the next 180 days, "
    "from a gradient-boosted decision-tree classifier (scikit-learn) trained on this "
    "organisation's own customers as they were 180 days ago; the three factors shown are "
    "the features furthest from the median of retained customers, weighted by the model's "
    "feature importance. Predicted value: the chance of staying times the won value of "
    "the last 12 months. Suggestions: product lines (pipelines) in which customers who "
    "bought the same lines as you also won deals."
)
AUTOMATED_DECISIONS = (
    "No decision with legal or similarly significant effect (GDPR Art. 22) is taken on "
    "these scores: they only help staff decide whom to talk to and what to offer. A "
    "campaign may select people by score only under a purpose that allows profiling."
)


UNKNOWN_CURRENCY = "unknown"  # a won deal without a currency: never added to a value


@dataclass(frozen=True)
class ValueRates:
    """How won deal amounts become the one currency customer value is counted in
    (settings ``CONSENTRY_SCORE_CURRENCY`` and ``CONSENTRY_SCORE_RATES``, documented in
    docs/analytics-scores.md). ``rates[X]`` is what one unit of X is worth in ``currency``.
    An amount in a currency without a rate (or without a currency) is never added to a
    value: the person's scores list it apart, per currency (``unconverted``)."""

    currency: str = "EUR"
    rates: Mapping[str, Decimal] = field(default_factory=dict)

    def convert(self, amount: Decimal, currency: str | None) -> Decimal | None:
        if currency == self.currency:
            return amount
        rate = self.rates.get(currency or "")
        return None if rate is None else amount * rate


@dataclass
class Activity:
    """What one person did, as dated facts (from ``Gateway.behaviour``)."""

    moments: list[dt.datetime] = field(default_factory=list)  # every deal, interaction, case
    interactions: list[dt.datetime] = field(default_factory=list)
    cases: list[dt.datetime] = field(default_factory=list)
    deals: list[dt.datetime] = field(default_factory=list)
    won: list[tuple[dt.datetime, Decimal]] = field(default_factory=list)  # value currency
    # Won amounts that could not be converted: (when, currency, major units).
    unconverted: list[tuple[dt.datetime, str, Decimal]] = field(default_factory=list)
    lines: set[str] = field(default_factory=set)  # pipelines with a won deal


def _utc(moment: Any) -> dt.datetime:
    when: dt.datetime = dt.datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def activities(
    facts: Mapping[str, Sequence[tuple[Any, ...]]],
    won_stages: Callable[[str | None, str | None], bool] | None = None,
    rates: ValueRates | None = None,
) -> dict[str, Activity]:
    """Per-person activity from ``Gateway.behaviour``'s rows. ``won_stages(pipeline,
    stage)`` says which stages are won (pipelines name their own); default: "won".
    ``rates``: how won amounts become one currency (default: EUR, no other rates)."""
    rates = rates or ValueRates()
    people: dict[str, Activity] = defaultdict(Activity)
    for subject, amount, currency, stage, pipeline, updated_at in facts.get("deal", ()):
        when = _utc(updated_at)
        person = people[subject]
        person.moments.append(when)
        person.deals.append(when)
        pipeline_id = None if pipeline is None else str(pipeline)
        if won_stages(pipeline_id, stage) if won_stages else stage == "won":
            major = to_major(int(amount or 0), currency or None)
            value = rates.convert(major, currency or None)
            if value is None:
                person.unconverted.append((when, str(currency or UNKNOWN_CURRENCY), major))
            else:
                person.won.append((when, value))
            if pipeline is not None:
                person.lines.add(str(pipeline))
    for subject, occurred_at in facts.get("interaction", ()):
        when = _utc(occurred_at)
        people[subject].moments.append(when)
        people[subject].interactions.append(when)
    for subject, created_at in facts.get("case", ()):
        when = _utc(created_at)
        people[subject].moments.append(when)
        people[subject].cases.append(when)
    return dict(people)


def features_at(person: Activity, at: dt.datetime) -> list[float] | None:
    """The five model features as they stood at ``at``; None if nothing happened before."""
    since = at - dt.timedelta(days=VALUE_DAYS)
    past = [m for m in person.moments if m <= at]
    if not past:
        return None

    def within(moments: Iterable[dt.datetime]) -> int:
        return sum(1 for m in moments if since < m <= at)

    interactions = within(person.interactions)
    return [
        float((at - max(past)).days),
        float(within(person.deals) + interactions),
        float(sum(v for m, v in person.won if since < m <= at)),
        float(within(person.cases)),
        float(interactions),
    ]


@dataclass(frozen=True)
class ChurnModel:
    classifier: GradientBoostingClassifier
    validation_auc: float | None  # ROC AUC on the held-out quarter
    trained_on: int
    importances: tuple[float, ...]
    retained_median: tuple[float, ...]
    retained_spread: tuple[float, ...]  # inter-quartile range (1 where it is 0)

    def risk(self, rows: np.ndarray) -> np.ndarray:
        return self.classifier.predict_proba(rows)[:, 1]  # type: ignore[no-any-return]

    def factors(self, row: Sequence[float]) -> list[dict[str, Any]]:
        """The three features furthest from retained customers' median, in spreads,
        weighted by importance: what drove this person's risk, in words and figures."""
        weights = []
        for i, name in enumerate(FEATURES):
            distance = abs(row[i] - self.retained_median[i]) / self.retained_spread[i]
            weights.append((distance * self.importances[i], name, i))
        weights.sort(reverse=True)
        return [
            {
                "feature": name,
                "label": FEATURE_LABELS[name],
                "value": round(row[i], 2),
                "retained_median": round(self.retained_median[i], 2),
                "weight": round(weight, 4),
            }
            for weight, name, i in weights[:3]
        ]


def train_churn(
    training: Sequence[Sequence[float]], churned: Sequence[int], seed: int = SEED
) -> ChurnModel | None:
    """Fit the classifier on 3/4 of the people, report ROC AUC on the held-out 1/4, then
    refit on everyone. None when there is too little history (or only one outcome)."""
    import numpy as np
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    x = np.asarray(training, dtype=float)
    y = np.asarray(churned, dtype=int)
    if len(y) < MIN_TRAINING or len(set(y.tolist())) < 2 or min(Counter(y.tolist()).values()) < 4:
        return None

    def fit(xs: np.ndarray, ys: np.ndarray) -> GradientBoostingClassifier:
        model = GradientBoostingClassifier(
            n_estimators=100, max_depth=3, learning_rate=0.1, random_state=seed
        )
        model.fit(xs, ys)
        return model

    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=HOLDOUT, random_state=seed, stratify=y
    )
    auc = None
    if len(set(y_train.tolist())) == 2 and len(set(y_test.tolist())) == 2:
        auc = float(roc_auc_score(y_test, fit(x_train, y_train).predict_proba(x_test)[:, 1]))
    final = fit(x, y)
    retained = x[y == 0]
    q1, median, q3 = np.percentile(retained, [25, 50, 75], axis=0)
    spread = np.where((q3 - q1) > 0, q3 - q1, 1.0)
    return ChurnModel(
        classifier=final,
        validation_auc=auc,
        trained_on=len(y),
        importances=tuple(float(v) for v in final.feature_importances_),
        retained_median=tuple(float(v) for v in median),
        retained_spread=tuple(float(v) for v in spread),
    )


def _ranks(values: np.ndarray, *, lower_is_better: bool = False) -> np.ndarray:
    """Quintile ranks 1-5 by position among everyone scored (ties share a rank)."""
    import numpy as np

    if len(values) == 0:
        return np.zeros(0, dtype=int)
    order = values if not lower_is_better else -values
    # The fraction of people strictly below, so equal values get equal ranks.
    sorted_values = np.sort(order)
    below = np.searchsorted(sorted_values, order, side="left") / len(values)
    ranks: np.ndarray = np.minimum((below * 5).astype(int) + 1, 5)
    return ranks


def segment(r: int, f: int, m: int) -> str:
    if r >= 4 and f >= 4 and m >= 4:
        return "champions"
    if f >= 4 and r >= 3:
        return "loyal"
    if r >= 4 and f <= 1:
        return "new"
    if r >= 3:
        return "promising"
    if f >= 3 and r == 2:
        return "needs_attention"
    if f >= 3 or m >= 4:
        return "at_risk"
    return "hibernating"


def cross_sell(people: Mapping[str, Activity]) -> Callable[[Activity], list[str]]:
    """Product lines (pipelines) to suggest: for each line a person has not bought, the
    share of buyers of their lines who also bought it, summed over their lines; lines
    bought by fewer than ``CROSS_SELL_SUPPORT`` people are never suggested."""
    buyers: Counter[str] = Counter()
    together: Counter[tuple[str, str]] = Counter()
    for person in people.values():
        for line in person.lines:
            buyers[line] += 1
            for other in person.lines:
                if other != line:
                    together[(line, other)] += 1

    def suggest(person: Activity) -> list[str]:
        scores: dict[str, float] = defaultdict(float)
        for own in person.lines:
            for (line, other), n in together.items():
                if (
                    line == own
                    and other not in person.lines
                    and buyers[other] >= CROSS_SELL_SUPPORT
                ):
                    scores[other] += n / buyers[own]
        return sorted(scores, key=lambda line: (-scores[line], line))[:3]

    return suggest


@dataclass(frozen=True)
class Score:
    """One person's scores: what is sealed under their key (``as_json``)."""

    computed_at: dt.datetime
    recency: int
    frequency: int
    monetary: int
    segment: str
    features: dict[str, float]
    historical_value: float
    churn_risk: float | None
    predicted_value: float | None
    churn_factors: list[dict[str, Any]]
    suggestions: list[str]
    value_currency: str = "EUR"  # the currency of the monetary, historical and predicted value
    # Won value of the last 12 months in currencies without a rate: never added to the
    # value above, shown apart (major units per currency).
    unconverted: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "model": MODEL_VERSION,
            "computed_at": self.computed_at.isoformat(),
            "rfm": {
                "recency": self.recency,
                "frequency": self.frequency,
                "monetary": self.monetary,
            },
            "segment": self.segment,
            "features": self.features,
            "value_currency": self.value_currency,
            "unconverted": self.unconverted,
            "historical_value": self.historical_value,
            "churn_risk": self.churn_risk,
            "predicted_value": self.predicted_value,
            "churn_factors": self.churn_factors,
            "suggestions": self.suggestions,
        }


@dataclass(frozen=True)
class Scoring:
    scores: dict[str, Score]
    model: ChurnModel | None


def score_everyone(
    people: Mapping[str, Activity],
    now: dt.datetime,
    seed: int = SEED,
    sample: int = 0,
    value_currency: str = "EUR",
) -> Scoring:
    """Train on the history (on a seeded sample of ``sample`` people when there are more),
    score everyone as they stand at ``now``. Values are in ``value_currency`` (the
    :class:`ValueRates` the activities were built with)."""
    import numpy as np

    snapshot = now - dt.timedelta(days=HORIZON_DAYS)
    training: list[list[float]] = []
    churned: list[int] = []
    for person in people.values():
        row = features_at(person, snapshot)
        if row is None:
            continue
        training.append(row)
        churned.append(int(not any(snapshot < m <= now for m in person.moments)))
    if sample and len(training) > sample:
        chosen = random.Random(seed).sample(range(len(training)), sample)  # noqa: S311 - a reproducible training sample, not a secret
        training = [training[i] for i in chosen]
        churned = [churned[i] for i in chosen]
    model = train_churn(training, churned, seed)
    subjects = list(people)
    rows = np.asarray([features_at(people[s], now) for s in subjects], dtype=float)
    if not subjects:
        return Scoring({}, model)
    r = _ranks(rows[:, 0], lower_is_better=True)
    f = _ranks(rows[:, 1])
    m = _ranks(rows[:, 2])
    risks = model.risk(rows) if model is not None else None
    suggest = cross_sell(people)
    scores = {}
    for i, subject in enumerate(subjects):
        row = rows[i].tolist()
        risk = float(risks[i]) if risks is not None else None
        scores[subject] = Score(
            computed_at=now,
            recency=int(r[i]),
            frequency=int(f[i]),
            monetary=int(m[i]),
            segment=segment(int(r[i]), int(f[i]), int(m[i])),
            features=dict(zip(FEATURES, (round(v, 2) for v in row), strict=True)),
            historical_value=round(row[2], 2),
            churn_risk=None if risk is None else round(risk, 4),
            predicted_value=None if risk is None else round((1 - risk) * row[2], 2),
            churn_factors=model.factors(row) if model is not None else [],
            suggestions=suggest(people[subject]),
            value_currency=value_currency,
            unconverted=_unconverted(people[subject], now),
        )
    return Scoring(scores, model)


def _unconverted(person: Activity, now: dt.datetime) -> dict[str, float]:
    """Won value of the last 12 months per currency that has no rate (major units)."""
    since = now - dt.timedelta(days=VALUE_DAYS)
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for when, currency, amount in person.unconverted:
        if since < when <= now:
            totals[currency] += amount
    return {c: float(round(v, 2)) for c, v in sorted(totals.items())}


def generated_people(n: int, now: dt.datetime, seed: int = SEED) -> dict[str, Activity]:
    """A synthetic customer base with a known behaviour for ``consentry analytics validate``:
    engaged customers keep buying, some drift away (their activity thins out, cases pile up
    before they go). Fixed ``seed``: the same people every run."""
    rng = random.Random(seed)  # noqa: S311 - generated test customers, not a secret
    people: dict[str, Activity] = {}
    start = now - dt.timedelta(days=3 * VALUE_DAYS)
    for i in range(n):
        person = Activity()
        engagement = rng.betavariate(2, 2)  # 0: drifting away, 1: loyal
        leaves = start + dt.timedelta(days=rng.uniform(200, 3 * VALUE_DAYS + 200))
        stops = leaves if rng.random() > engagement else now
        rate = 2 + 25 * engagement  # events a year
        moment = start + dt.timedelta(days=rng.expovariate(rate / 365))
        while moment < stops:
            kind = rng.random()
            if kind < 0.65:
                person.interactions.append(moment)
            elif kind < 0.85 + 0.1 * (1 - engagement):
                person.cases.append(moment)
            else:
                person.deals.append(moment)
                if rng.random() < 0.3 + 0.4 * engagement:
                    person.won.append((moment, Decimal(rng.randint(200, 5000))))
                    person.lines.add(rng.choice(("A", "B", "C") if engagement > 0.5 else ("A",)))
            person.moments.append(moment)
            moment += dt.timedelta(days=rng.expovariate(rate / 365))
        if person.moments:
            people[f"generated-{i}"] = person
    return people
