"""Checks for lab 00: a Delta table of the learner's own, its history, time travel and RESTORE."""
from __future__ import annotations

from helpers.checks import Wrong, expect, is_count, task

TABLE = "loyalty_customers"
COLUMNS = ["CustomerID", "cust_age", "num_invoices", "total_spend"]
WRITES = ("CREATE TABLE AS SELECT", "CREATE OR REPLACE TABLE AS SELECT", "WRITE")


def _history(spark) -> list:
    return spark.sql(f"DESCRIBE HISTORY {TABLE}").select("version", "operation").orderBy("version").collect()


def _rows(spark, version: int) -> int:
    return spark.read.option("versionAsOf", version).table(TABLE).count()


def _whole_list(spark) -> int:
    return spark.read.table("retail_features").filter("num_invoices >= 5").count()


def _written_version(spark) -> int:
    """The last version that Task 1's write made (a re-run writes a new one)."""
    expect(spark.catalog.tableExists(TABLE), f"there is no table `{TABLE}` yet",
           f"run Task 1 first: its write makes `{TABLE}`")
    writes = [row.version for row in _history(spark) if row.operation in WRITES]
    expect(writes, f"`{TABLE}`'s history has no write", "run Task 1 again")
    return writes[-1]


@task(1, hint="write the DataFrame with .write.format(\"delta\").mode(\"overwrite\").saveAsTable(\"loyalty_customers\")")
def task1(spark) -> str:
    expect(spark.catalog.tableExists(TABLE), f"there is no table `{TABLE}` yet",
           f'end the cell with .write.format("delta").mode("overwrite").saveAsTable("{TABLE}")')
    table_format = spark.sql(f"DESCRIBE DETAIL {TABLE}").first()["format"]
    expect(table_format == "delta", f"`{TABLE}` is a {table_format} table, not a Delta table",
           'write it with .format("delta")')
    version = _written_version(spark)
    written = spark.read.option("versionAsOf", version).table(TABLE)
    expect(written.columns == COLUMNS, f"its columns are {written.columns}",
           f"select exactly {', '.join(COLUMNS)}, in that order, before writing")
    rows, expected = written.count(), _whole_list(spark)
    expect(rows == expected, f"it has {rows} rows, and {expected} customers have num_invoices >= 5",
           'filter retail_features with .filter("num_invoices >= 5") before selecting the columns')
    return f"`{TABLE}` version {version}: {rows} customers with 5 invoices or more."


@task(2, hint="`before_delete` must be a DataFrame: spark.read.option(\"versionAsOf\", ...).table(\"loyalty_customers\")")
def task2(spark, delete_version, before_delete) -> str:
    expect(is_count(delete_version),
           f"`delete_version` is {delete_version!r}, not a version number",
           "run the DELETE, then take the version of its row in DESCRIBE HISTORY (operation = 'DELETE')")
    operations = {row.version: row.operation for row in _history(spark)}
    expect(operations.get(delete_version) == "DELETE",
           f"version {delete_version} of `{TABLE}` is {operations.get(delete_version, 'not in its history')}, "
           "not a DELETE", "delete with spark.sql(\"DELETE FROM loyalty_customers WHERE cust_age < 25\") and read "
           "the version of the DELETE row from DESCRIBE HISTORY")
    young_left = spark.read.option("versionAsOf", delete_version).table(TABLE).filter("cust_age < 25").count()
    expect(young_left == 0, f"after the delete, {young_left} customers younger than 25 are still in the table",
           "the condition is cust_age < 25")
    expect(before_delete is not None and hasattr(before_delete, "count"),
           f"`before_delete` is {type(before_delete).__name__}, not a DataFrame",
           "read the version before the delete: spark.read.option(\"versionAsOf\", delete_version - 1)"
           ".table(\"loyalty_customers\")")
    rows, expected = before_delete.count(), _rows(spark, delete_version - 1)
    expect(rows == expected, f"`before_delete` has {rows} rows; the version before the delete has {expected}",
           "time travel to delete_version - 1, the version just before the delete")
    young = before_delete.filter("cust_age < 25").count()
    expect(young > 0, "`before_delete` has no customer younger than 25, so it is not the table before the delete",
           "read it with versionAsOf delete_version - 1, not the current table")
    return f"version {delete_version} deleted {young} customers; time travel still reads all {rows}."


@task(3, hint="after RESTORE TABLE, count spark.read.table(\"loyalty_customers\")")
def task3(spark, restored_rows) -> str:
    expect(is_count(restored_rows),
           f"`restored_rows` is {restored_rows!r}, not a row count",
           "set it to spark.read.table(\"loyalty_customers\").count() after the RESTORE")
    history = _history(spark)
    latest = history[-1]
    expect(latest.operation == "RESTORE", f"the table's latest version ({latest.version}) is a {latest.operation}, "
           "not a RESTORE" + (" (a RESTORE to the version the table is at already writes no new version)"
                              if latest.operation == "DELETE" else ""),
           'restore to the version before the delete: spark.sql(f"RESTORE TABLE loyalty_customers TO VERSION AS OF '
           '{delete_version - 1}")')
    current, whole = spark.read.table(TABLE).count(), _rows(spark, _written_version(spark))
    expect(current == whole, f"the restored table has {current} rows, the table before the delete had {whole}",
           "restore to the version just before the delete, delete_version - 1")
    expect(restored_rows == current, f"`restored_rows` is {restored_rows}, and the table has {current} rows",
           "count the table after the RESTORE, not before")
    deleted = [row.version for row in history if row.operation == "DELETE"]
    expect(deleted, "the history no longer shows the delete", "run the lab again from Setup")
    return f"{current} customers again, and the history still records the delete (version {deleted[-1]})."
