import csv
import gzip
import io
import statistics

import pytest

from helpers import data
from helpers.data import DATA_DIR, data_path, generate


@pytest.fixture(scope="module")
def files():
    return generate()


def rows(payload: bytes) -> list[dict]:
    text = gzip.decompress(payload).decode() if payload[:2] == b"\x1f\x8b" else payload.decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_committed_files_are_exactly_what_the_generator_writes(files):
    committed = {p.name for p in DATA_DIR.iterdir() if p.name != "README.md"}
    assert committed == set(files)
    for name, payload in files.items():
        assert (DATA_DIR / name).read_bytes() == payload, f"data/{name} differs: run `python -m helpers.data`"


def test_the_data_folder_stays_small():
    assert sum(p.stat().st_size for p in DATA_DIR.iterdir()) < 5 * 1024 * 1024


def test_a_different_seed_gives_different_data():
    assert generate(seed=7)[data.CUSTOMERS_FILE] != generate()[data.CUSTOMERS_FILE]


def test_transactions_keep_the_uci_schema_and_its_dirt(files):
    lines = rows(files[data.TRANSACTIONS_FILE])
    assert list(lines[0]) == data.TRANSACTION_COLUMNS
    cancellations = [r for r in lines if r["InvoiceNo"].startswith("C")]
    assert cancellations and all(int(r["Quantity"]) < 0 for r in cancellations)
    assert sum(1 for r in lines if r["CustomerID"] == "") > 1000  # guest checkouts
    as_tuples = [tuple(r.values()) for r in lines]
    assert len(as_tuples) - len(set(as_tuples)) > 100  # lines scanned twice
    months = {r["InvoiceDate"][:7] for r in lines if not r["InvoiceNo"].startswith("C")}  # a late cancellation may spill
    assert min(months) == "2023-12" and max(months) == "2024-11" and len(months) == 12


def test_the_drift_month_brings_younger_customers(files):
    ages = {r["CustomerID"]: int(r["Age"]) for r in rows(files[data.CUSTOMERS_FILE])}
    year = {r["CustomerID"].removesuffix(".0") for r in rows(files[data.TRANSACTIONS_FILE]) if r["CustomerID"]}
    month = rows(files[data.DRIFT_MONTH_FILE])
    assert {r["InvoiceDate"][:7] for r in month} == {"2024-12"}
    newcomers = {r["CustomerID"].removesuffix(".0") for r in month if r["CustomerID"]} - year
    assert len(newcomers) > 200
    assert statistics.mean(ages[c] for c in newcomers) < statistics.mean(ages[c] for c in year) - 10
    # and they shop differently: gift sets of three, a quantity the model never saw in the training year
    joined_later = {c for c in newcomers if int(c) > max(map(int, year))}  # not a regular who skipped the year
    bought = [int(r["Quantity"]) for r in month if r["CustomerID"].removesuffix(".0") in joined_later
              and int(r["Quantity"]) > 0]
    assert bought and all(quantity % data.NEWCOMER_PACK == 0 for quantity in bought)
    regulars = [int(r["Quantity"]) for r in month if r["CustomerID"].removesuffix(".0") in year
                and int(r["Quantity"]) > 0]
    assert statistics.mean(bought) > 2 * statistics.mean(regulars)


def test_a_missing_file_says_how_to_regenerate(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m helpers.data"):
        data_path("customers.csv", data_dir=tmp_path)
