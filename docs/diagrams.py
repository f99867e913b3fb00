"""Draws the course's diagrams into docs/images/ as SVG: change a box or an arrow here and run

    .venv/bin/python docs/diagrams.py

The notebooks show the files (`![...](../docs/images/<name>.svg)`); tests/test_docs.py checks every diagram is
drawn by this script and up to date. Only matplotlib, which the course installs anyway, so nothing else to learn.
"""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

IMAGES = Path(__file__).resolve().parent / "images"
INK, MUTED = "#1f2933", "#52606d"
FILLS = {"data": "#e3f2fd", "mlflow": "#e8f5e9", "ops": "#fff3e0", "note": "#f5f5f5"}


def box(ax, x, y, text, kind="mlflow", width=2.6, height=0.9):
    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.04,rounding_size=0.12",
                                facecolor=FILLS[kind], edgecolor=INK, linewidth=1.1))
    ax.text(x, y, text, ha="center", va="center", fontsize=9, color=INK)


def arrow(ax, start, end, label="", bend=0.0, offset=(0, 0.18)):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, color=MUTED, linewidth=1.2,
                                 connectionstyle=f"arc3,rad={bend}", shrinkA=4, shrinkB=4))
    if label:
        ax.text((start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1], label, ha="center",
                va="center", fontsize=8.5, color=MUTED, style="italic")


def canvas(width, height):
    figure, ax = plt.subplots(figsize=(width, height))
    ax.set_xlim(0, width * 1.6)
    ax.set_ylim(0, height * 1.6)
    ax.axis("off")
    return figure, ax


LEFT, MIDDLE, RIGHT = 2.3, 7.2, 12.1


def loop(ax, steps, top, bottom, width):
    """Six boxes in a loop: three along the top from left to right, three back along the bottom."""
    places = [(LEFT, top), (MIDDLE, top), (RIGHT, top), (RIGHT, bottom), (MIDDLE, bottom), (LEFT, bottom)]
    for (x, y), (text, kind) in zip(places, steps):
        box(ax, x, y, text, kind, width=width, height=1.2)
    half = width / 2
    for (x1, y1), (x2, y2) in zip(places, places[1:] + places[:1]):
        if y1 == y2:
            arrow(ax, (x1 + half * (1 if x2 > x1 else -1), y1), (x2 - half * (1 if x2 > x1 else -1), y2))
        else:
            arrow(ax, (x1, y1 + 0.6 * (1 if y2 > y1 else -1)), (x2, y2 - 0.6 * (1 if y2 > y1 else -1)))


def caption(ax, x, y, text, **options):
    ax.text(x, y, text, ha=options.pop("ha", "center"), fontsize=8.5, color=MUTED, style="italic", **options)


def lifecycle():
    """The ML lifecycle the course follows, and the MLflow component behind each step."""
    figure, ax = canvas(9, 4.2)
    loop(ax, [("data\n(Delta tables: 00)", "data"), ("train and track\n(Tracking: 01, 02)", "mlflow"),
              ("package\n(Models: 03; Projects: 07)", "mlflow"), ("register and promote\n(Model Registry: 04, 07, 08)", "mlflow"),
              ("deploy: batch and online\n(Models: 05, 06)", "ops"), ("monitor and retrain\n(Tracking, Projects: 09)", "ops")],
         top=5.2, bottom=1.5, width=4.0)
    ax.text(MIDDLE, 3.35, "MLflow's four components: Tracking, Models, Projects, Model Registry",
            ha="center", fontsize=9.5, color=INK, weight="bold")
    return figure


def medallion():
    """Bronze, silver and gold: the tables notebook 00 builds."""
    figure, ax = canvas(9, 2.2)
    stages = [(1.8, "raw CSV files\nin data/", "note"), (5.4, "bronze\nretail_bronze\n(as landed)", "data"),
              (9.0, "silver\nretail_silver\n(cleaned)", "data"),
              (12.6, "gold\nretail_features\n(one row per customer)", "data")]
    for x, text, kind in stages:
        box(ax, x, 1.7, text, kind, width=3.35, height=1.4)
    for (x1, *_), (x2, *_), label in zip(stages, stages[1:], ["load", "clean", "features"]):
        arrow(ax, (x1 + 1.68, 1.7), (x2 - 1.68, 1.7))
        caption(ax, (x1 + x2) / 2, 2.75, label)
    ax.text(7.2, 0.4, "every write is a new Delta version: history and time travel", ha="center", fontsize=9,
            color=MUTED)
    return figure


def registry():
    """A registered model: numbered versions, each from a run; aliases point at versions."""
    figure, ax = canvas(9, 3)
    ax.text(7.2, 4.4, "registered model retail_age_model", ha="center", fontsize=10.5, color=INK, weight="bold")
    for i, status in enumerate(["passed", "failed", "failed", "passed"]):
        x = 2.0 + i * 3.6
        box(ax, x, 2.5, f"version {i + 1}\nvalidation: {status}", "mlflow", width=3.3, height=1.0)
        box(ax, x, 0.65, "its run: parameters,\nmetrics, Delta version", "note", width=3.3, height=1.0)
        arrow(ax, (x, 1.15), (x, 2.0))
    for x, alias in ((5.6, "@challenger"), (12.8, "@champion")):
        ax.text(x, 3.65, alias, ha="center", fontsize=9.5, color="#c62828", weight="bold")
        arrow(ax, (x, 3.5), (x, 3.0))
    return figure


def cd4ml():
    """The CD4ML loop of notebooks 07-09."""
    figure, ax = canvas(9, 4)
    top, bottom = 5.0, 1.2
    loop(ax, [("a new month\nlands in Delta", "data"), ("monitoring run:\nPSI, RMSE", "mlflow"),
              ("training project\nregisters version N", "mlflow"), ("webhook: signed\nmodel_version.created", "ops"),
              ("gate: N against\n@champion", "ops"), ("@champion moves to N;\nbatch scoring", "data")],
         top=top, bottom=bottom, width=3.8)
    caption(ax, (MIDDLE + RIGHT) / 2, top + 0.95, "a threshold crossed")
    caption(ax, (MIDDLE + RIGHT) / 2, bottom - 0.95, "the CI job")
    caption(ax, (LEFT + MIDDLE) / 2, bottom - 0.95, "passes")
    caption(ax, LEFT + 0.25, 3.1, "next month", ha="left")
    caption(ax, MIDDLE, 3.1, "fails: N is tagged rejected, @champion stays")
    return figure


DIAGRAMS = {"lifecycle": lifecycle, "medallion": medallion, "registry": registry, "cd4ml": cd4ml}


def render(draw) -> str:
    """One diagram as SVG text, the same on every run (no dates, no random ids)."""
    plt.rcParams["svg.hashsalt"] = "course"
    plt.rcParams["svg.fonttype"] = "none"  # text stays text: searchable, and small
    figure = draw()
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(figure)
    return buffer.getvalue()


def main() -> None:
    IMAGES.mkdir(exist_ok=True)
    for name, draw in DIAGRAMS.items():
        (IMAGES / f"{name}.svg").write_text(render(draw))
        print(f"wrote docs/images/{name}.svg")


if __name__ == "__main__":
    main()
