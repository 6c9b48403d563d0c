"""``trainwise runs compare`` in the terminal: parameters that differ, figures with deltas, and
environment differences, as rich tables."""

from __future__ import annotations

from trainwise.runs.compare import Comparison, better, delta
from trainwise.runs.listing import display


def print_comparison(comparison: Comparison) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(soft_wrap=False)
    names = [escape(run.name) + f"\n[dim]{run.id}[/]" for run in comparison.runs]

    def table(title: str) -> Table:
        result = Table(title=title, title_justify="left", show_edge=False, header_style="bold")
        result.add_column("")
        for name in names:
            result.add_column(name, justify="right")
        return result

    params = table("parameters" + (" (all)" if comparison.all_params else " that differ"))
    for key, values in comparison.params:
        params.add_row(escape(key), *(escape(display(key, v)) for v in values))
    if comparison.params:
        console.print(params)
    else:
        console.print("[dim]the runs have the same parameters (--all lists them)[/]")
    figures = table("figures (change against the first run)")
    for key, values in comparison.figures:
        cells = []
        for index, value in enumerate(values):
            change, text = delta(values, index), escape(display(key, value))
            if change:
                verdict = better(key, change)
                style = "" if verdict is None else ("green" if verdict else "red")
                sign = "+" if change > 0 else ""
                text += f" [{style or 'dim'}]({sign}{escape(display(key, change))})[/]"
            cells.append(text)
        figures.add_row(escape(key), *cells)
    console.print(figures)
    differing = [(k, v) for k, v in comparison.environment if any(x != v[0] for x in v[1:])]
    if differing:
        environment = table("environment differences")
        for key, values in differing:
            environment.add_row(escape(key), *(escape(display(key, v)) for v in values))
        console.print(environment)
