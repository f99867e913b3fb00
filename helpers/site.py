"""Builds the course's site, `python3 course.py site`: the README, the ten executed lessons and docs/ as HTML.

Sphinx with MyST-NB (settings in site/conf.py) renders the notebooks with their committed outputs, never
re-running them, so the site shows exactly what nbval checks. The pages land in the workspace's `site/` folder.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from helpers.config import REPO_ROOT, display_path, workspace_dir


def build(output: Path | None = None, quiet: bool = True) -> Path:
    """Builds the site into `output` (default: the workspace's site/ folder) and returns the index page's path."""
    from sphinx.cmd.build import build_main

    output = output or workspace_dir("site")
    arguments = ["-b", "html", "-c", str(REPO_ROOT / "site"), "-d", str(output / ".doctrees"), "-j", "auto",
                 *(["-q"] if quiet else []), str(REPO_ROOT), str(output)]
    if build_main(arguments) != 0:
        raise SystemExit("course.py site: Sphinx could not build the site; its messages above say why.")
    return output / "index.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="course.py site", description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=None, help="the folder for the HTML (default: workspace/site)")
    parser.add_argument("--verbose", action="store_true", help="print Sphinx's progress")
    args = parser.parse_args(argv)
    index = build(args.output, quiet=not args.verbose)
    print(f"The course's site: {display_path(index)} (open it in a browser)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
