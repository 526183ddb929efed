"""``consentry analytics ...``: customer scores under profiling (docs/analytics-scores.md)."""

from __future__ import annotations

from typing import Any

import click

from server.cli.runtime import fail, load_services, run_with_database
from server.settings import get_settings


@click.group()
def analytics() -> None:
    """Customer value and churn scores (docs/analytics-scores.md)."""


@analytics.command("score")
def analytics_score() -> None:
    """Score every customer with a basis for profiling, now.

    Reads deals, interactions and cases of the people who consented to profiling (and
    did not object) through the gateway, trains the churn model on their history, and
    stores each person's scores sealed under their key; scores of people without a basis
    are deleted. The server does the same once a day. Audited per batch of people.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    services = load_services(get_settings())
    console = Console(stderr=True)

    async def go() -> Any:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("people"),
        )
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("Scoring", total=None)
            run = await services.analytics.score_all(
                progress=lambda done, total: bar.update(task, completed=done, total=total)
            )
        await services.audit_trail.seal_all()
        return run

    run = run_with_database(go)
    auc = "n/a (too little history)" if run.validation_auc is None else f"{run.validation_auc:.3f}"
    click.echo(
        f"scored {run.scored} people, removed {run.removed} stale score(s) in "
        f"{run.seconds:.1f} s; churn model trained on {run.trained_on}, held-out ROC AUC {auc}"
    )


@analytics.command("validate")
@click.option(
    "--generate",
    "people",
    default=5000,
    show_default=True,
    type=click.IntRange(100, 1_000_000),
    help="How many customers to generate.",
)
@click.option("--seed", default=20, show_default=True, type=int, help="Random seed.")
def analytics_validate(people: int, seed: int) -> None:
    """Reproduce the churn model's held-out ROC AUC on a generated customer base.

    No database is touched: the customers are generated with a fixed seed, the model is
    trained on three quarters of them (their history as it stood 180 days ago) and the
    ROC AUC on the held-out quarter is printed - the figure in docs/analytics-scores.md.
    """
    import datetime as dt

    from server.analytics import model

    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    scoring = model.score_everyone(model.generated_people(people, now, seed), now, seed)
    if scoring.model is None or scoring.model.validation_auc is None:
        fail("too little history to train the churn model; generate more customers")
    assert scoring.model is not None
    assert scoring.model.validation_auc is not None
    click.echo(
        f"customers: {len(scoring.scores)}; trained on: {scoring.model.trained_on}; "
        f"held-out ROC AUC: {scoring.model.validation_auc:.3f}"
    )
