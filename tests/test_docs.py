"""The README stays a short front page, and every page it, docs/ and the notebooks' prose link to exists."""
import re

import nbformat

from helpers.config import REPO_ROOT

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md")),
         *sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))]


def prose(page):
    if page.suffix == ".ipynb":
        return "\n".join(c.source for c in nbformat.read(page, as_version=4).cells if c.cell_type == "markdown")
    return page.read_text()


def relative_links(page):
    for target in re.findall(r"\]\(([^)\s]+)\)", prose(page)):
        if not re.match(r"[a-z]+:", target) and not target.startswith("#"):
            yield target.split("#")[0]


def test_every_relative_link_of_the_readme_and_docs_exists():
    broken = [f"{page.relative_to(REPO_ROOT)} -> {target}" for page in PAGES for target in relative_links(page)
              if not (page.parent / target).exists()]
    assert not broken, broken


def test_the_readme_is_short_and_reaches_every_docs_page():
    readme = REPO_ROOT / "README.md"
    assert len(readme.read_bytes()) <= 12 * 1024, "README.md is for arriving learners: move details to docs/"
    linked = {(readme.parent / target).resolve() for target in relative_links(readme)}
    assert not [p.name for p in PAGES if p.parent.name == "docs" and p.resolve() not in linked]


def test_every_diagram_is_drawn_by_the_script_and_up_to_date():
    import importlib.util

    spec = importlib.util.spec_from_file_location("diagrams", REPO_ROOT / "docs" / "diagrams.py")
    diagrams = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(diagrams)
    committed = {p.stem for p in diagrams.IMAGES.glob("*.svg")}
    assert committed == set(diagrams.DIAGRAMS), "an SVG in docs/images/ that docs/diagrams.py does not draw, or one missing"
    stale = [name for name, draw in diagrams.DIAGRAMS.items()
             if (diagrams.IMAGES / f"{name}.svg").read_text() != diagrams.render(draw)]
    assert not stale, f"run `.venv/bin/python docs/diagrams.py` and commit: {stale}"


def test_the_compute_tables_are_made_from_the_recorded_stand_in_runs():
    """README's and docs/databricks.md's compute tables say what the recorded stand-in runs did, not what was typed."""
    from helpers.standin.report import expected_documents, recorded_runs

    assert "serverless" in recorded_runs()  # CI's own run is the serverless one; its record is committed
    for path, text in expected_documents().items():
        assert path.read_text() == text, f"{path.name}'s compute table: run `python3 course.py standin --report`"


def test_every_lesson_ends_with_questions_and_their_answers():
    """Three to five questions after the summary, each with its answer in a collapsed block, and the glossary."""
    import json

    for lesson in sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = ["".join(cell["source"]) for cell in json.loads(lesson.read_text())["cells"]]
        quiz = [text for text in cells if text.startswith("## Check your understanding")]
        assert len(quiz) == 1, f"{lesson.name}: no Check your understanding cell"
        questions, answers = quiz[0].split("<details>")
        asked = re.findall(r"^\d+\. .+\?", questions, flags=re.M)
        answered = re.findall(r"^\d+\. .+", answers.split("</summary>")[1], flags=re.M)
        assert 3 <= len(asked) <= 5 and len(answered) == len(asked), lesson.name
        assert "</details>" in answers and "(../docs/glossary.md)" in quiz[0], lesson.name


def glossary_anchor(heading: str) -> str:
    """The anchor GitHub and MyST give a glossary heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_glossary_link_of_a_lesson_names_a_glossary_entry():
    anchors = {glossary_anchor(line[4:]) for line in (REPO_ROOT / "docs" / "glossary.md").read_text().splitlines()
               if line.startswith("### ")}
    assert {"driver", "spark-connect", "psi-population-stability-index", "held-out-customers"} <= anchors
    for lesson in sorted((REPO_ROOT / "notebooks").glob("0*.ipynb")):
        text = "".join(cell.source for cell in nbformat.read(lesson, as_version=4).cells if cell.cell_type == "markdown")
        linked = re.findall(r"\]\(\.\./docs/glossary\.md#([\w-]+)\)", text)
        assert linked, f"{lesson.name} links no term to the glossary at its first use"
        assert set(linked) <= anchors, f"{lesson.name}: no glossary entry for {set(linked) - anchors}"
