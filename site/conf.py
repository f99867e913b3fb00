"""Sphinx settings of the course's site: the README, the executed lessons, the labs and docs/, built by
`python3 course.py site`.

The notebooks are shown with the outputs committed in them (one full course run; the labs have none); the site never
re-runs them.
"""
project = "Machine Learning Lifecycle Management with MLflow and Apache Spark"
author = "the course's maintainers"
copyright = "the course's maintainers, Apache License 2.0"

extensions = ["myst_nb"]
root_doc = "site/index"
# The source folder is the repository: only these files are pages.
include_patterns = ["site/index.md", "README.md", "notebooks/[0-9][0-9]_*.ipynb",
                    "notebooks/labs/[0-9][0-9]_*.ipynb", "docs/*.md", "data/README.md"]
nb_execution_mode = "off"  # the committed outputs of one full run, which nbval checks
myst_heading_anchors = 3  # links such as docs/configuration.md#java-the-delta-jars-and-proxies
suppress_warnings = ["myst.xref_missing"]  # links to folders and scripts of the repository, which are not pages

html_theme = "sphinx_book_theme"
html_title = "MLflow and Spark: the ML lifecycle"
html_theme_options = {"show_toc_level": 2, "use_download_button": True}
html_last_updated_fmt = None
html_extra_path = ["root"]  # (relative to this folder) an index.html at the site's root that opens the start page
smartquotes = False  # the pages show names and messages as the notebooks print them
