"""The course's feature definitions: raw invoice lines -> clean lines (silver) -> one row of features per customer.

Notebook 00 builds the training table `retail_features` with them; notebook 09 computes the same features when a
new month arrives. One definition for training and monitoring means the two can never disagree (the
"training/serving skew" that silently breaks models in production).
"""
from __future__ import annotations

import datetime as dt

LABEL = "cust_age"
VECTOR = "selected_features"  # the one column of all features, the name the book's code expects
# The category shares of a customer add up to 1; leaving one out keeps the linear model's solution unique.
BASELINE_CATEGORY = "KITCHEN"
MIN_INVOICES = 2  # notebook 00 deletes customers with fewer invoices: one basket says little about habits
BEHAVIOUR_FEATURES = ["num_invoices", "total_spend", "avg_basket_value", "lines_per_invoice", "avg_quantity",
                      "avg_unit_price", "avg_hour", "weekend_share"]


def share_column(category: str) -> str:
    return f"share_{category.lower().replace(' ', '_')}"


def feature_names(categories: list[str]) -> list[str]:
    """The feature columns, in the order of the selected_features vector."""
    return [*BEHAVIOUR_FEATURES, *(share_column(c) for c in sorted(categories) if c != BASELINE_CATEGORY)]


def clean_lines(bronze, products):
    """Silver: no exact duplicates, no cancellations, no guest lines; typed columns, each line's amount and category."""
    from pyspark.sql import functions as F

    return (
        bronze.drop("source_file").dropDuplicates()
        .filter(~F.col("InvoiceNo").startswith("C") & (F.col("Quantity") > 0))
        .filter(F.col("CustomerID").isNotNull())
        .withColumn("CustomerID", F.col("CustomerID").cast("int"))
        .withColumn("InvoiceDate", F.to_timestamp("InvoiceDate"))
        .withColumn("amount", F.round(F.col("Quantity") * F.col("UnitPrice"), 2))
        .join(products.select("StockCode", "Category"), on="StockCode", how="left")
    )


def customer_features(silver, customers, categories: list[str]):
    """One row per customer with a label: how often and how much they buy, when they shop, and the share of their
    spend in each product category; the label `cust_age` from the customers table; and all features as one vector."""
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import functions as F

    shares = [c for c in sorted(categories) if c != BASELINE_CATEGORY]
    behaviour = silver.groupBy("CustomerID").agg(
        F.countDistinct("InvoiceNo").alias("num_invoices"),
        F.sum("amount").alias("total_spend"),
        F.count("*").alias("num_lines"),
        F.avg("Quantity").alias("avg_quantity"),
        F.avg("UnitPrice").alias("avg_unit_price"),
        F.avg(F.hour("InvoiceDate") + F.minute("InvoiceDate") / 60).alias("avg_hour"),
        F.avg(F.dayofweek("InvoiceDate").isin(1, 7).cast("double")).alias("weekend_share"),
        *[(F.sum(F.when(F.col("Category") == c, F.col("amount")).otherwise(0.0)) / F.sum("amount"))
          .alias(share_column(c)) for c in shares],
    )
    features = (
        behaviour
        .withColumn("avg_basket_value", F.col("total_spend") / F.col("num_invoices"))
        .withColumn("lines_per_invoice", F.col("num_lines") / F.col("num_invoices"))
        .join(customers.select("CustomerID", F.col("Age").alias(LABEL)), on="CustomerID")
    )
    columns = feature_names(categories)
    return (VectorAssembler(inputCols=columns, outputCol=VECTOR).transform(features)
            .select("CustomerID", LABEL, *columns, VECTOR))


def month_bounds(month: dt.date) -> tuple[dt.date, dt.date]:
    """The first day of `month` and the first day of the month after it."""
    start = month.replace(day=1)
    return start, (start + dt.timedelta(days=32)).replace(day=1)


def year_ending_with(silver, month: dt.date):
    """The clean lines of the twelve months that end with `month`: the window the training year covers."""
    from pyspark.sql import functions as F

    end = month_bounds(month)[1]
    return silver.filter((F.col("InvoiceDate") >= F.lit(str(end.replace(year=end.year - 1))))
                         & (F.col("InvoiceDate") < F.lit(str(end))))


def training_table(silver, customers, categories: list[str], month: dt.date):
    """The features table a model would be trained on at the end of `month`: the twelve months that end with it,
    customers with at least MIN_INVOICES invoices (notebook 00's rule)."""
    from pyspark.sql import functions as F

    return customer_features(year_ending_with(silver, month), customers, categories) \
        .filter(F.col("num_invoices") >= MIN_INVOICES)
