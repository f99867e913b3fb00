"""A Databricks workspace on this machine, to prove the notebooks' Databricks branches without one: the runtimes' Spark
(workspace.py, `python3 course.py standin`) and Unity Catalog's model registry rules (registry.py)."""
