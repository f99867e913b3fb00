"""The course's synthetic retail data: where the files live and how they are generated from a fixed seed.

The shape follows the UCI Online Retail data set (one line per invoice line), joined to census-like customer
attributes. Purchase behaviour depends on age, so a model can learn `cust_age` from it.
"""
from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from helpers.config import DATA_DIR, settings

SEED = 42

CUSTOMERS_FILE = "customers.csv"
PRODUCTS_FILE = "products.csv"
TRANSACTIONS_FILE = "online_retail_2023-12_2024-11.csv.gz"
DRIFT_MONTH_FILE = "online_retail_2024-12.csv.gz"
NEWCOMER_PACK = 3

TRANSACTION_COLUMNS = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice",
                       "CustomerID", "Country"]
CUSTOMER_COLUMNS = ["CustomerID", "Age", "Gender", "MaritalStatus", "HouseholdSize", "IncomeBand"]
PRODUCT_COLUMNS = ["StockCode", "Description", "Category", "UnitPrice"]

# Category -> (products' words, base price, linear and quadratic affinity to age scaled to [-1, 1]).
CATEGORIES = {
    "GAMING": (["GAME CONTROLLER", "RETRO CONSOLE", "HEADSET", "GAMING MOUSE MAT", "COLLECTOR CARDS"], 14.0, -1.6, 0.0),
    "GADGETS": (["PHONE STAND", "LED STRIP", "USB LAMP", "WIRELESS CHARGER", "SELFIE LIGHT"], 9.0, -1.1, 0.2),
    "PARTY": (["PARTY BUNTING", "NEON BALLOONS", "PAPER CUPS", "CONFETTI CANNON", "PHOTO PROPS"], 3.0, -0.9, -0.3),
    "TOYS": (["WOODEN TRAIN", "PLAY DOUGH SET", "JIGSAW PUZZLE", "SOFT TOY RABBIT", "CRAYON BOX"], 5.0, -0.1, -1.2),
    "KITCHEN": (["LUNCH BOX", "BAKING SET", "SPICE JARS", "TEA TOWELS", "CAKE STAND"], 6.0, 0.3, -0.6),
    "HOME DECOR": (["HANGING HEART", "CANDLE HOLDER", "CUSHION COVER", "PHOTO FRAME", "WALL CLOCK"], 7.0, 0.6, 0.0),
    "GARDEN": (["BIRD FEEDER", "SEED TIN", "WATERING CAN", "PLANT LABELS", "GARDEN KNEELER"], 8.0, 1.3, 0.0),
    "VINTAGE": (["TEA SET", "SEWING KIT", "KNITTING NEEDLES", "POSTCARD SET", "DOILY PACK"], 6.5, 1.7, 0.2),
}
COLOURS = ["RED", "BLUE", "PINK", "WHITE", "IVORY", "GREEN"]
COUNTRIES = [("United Kingdom", 0.86), ("Germany", 0.04), ("France", 0.04), ("EIRE", 0.03), ("Spain", 0.015),
             ("Netherlands", 0.015)]

YEAR_START = datetime(2023, 12, 1)
DRIFT_MONTH_START = datetime(2024, 12, 1)


@dataclass(frozen=True)
class Product:
    stock_code: str
    description: str
    category: str
    unit_price: float


@dataclass(frozen=True)
class Customer:
    customer_id: int
    age: int
    gender: str
    marital_status: str
    household_size: int
    income_band: str
    country: str
    tastes: dict  # category -> weight, fixed per customer
    hour: float  # the customer's usual shopping hour
    price_level: float  # multiplier of how pricey the chosen products are
    visits: float  # expected invoices per month
    pack: int = 1  # every quantity times this: December's newcomers buy gift sets of three


def data_uri(name: str) -> str:
    """Where Spark reads one of the course's data files: this machine's file, or on Databricks its copy in the course's
    Unity Catalog volume (serverless executors cannot read workspace files; start_spark copies them there)."""
    path = data_path(name)
    config = settings()
    if config.on_databricks and config.uc_volume:
        catalog, schema, volume = config.uc_volume.split(".")
        return f"/Volumes/{catalog}/{schema}/{volume}/data/{name}"
    return path.as_uri()


def data_path(name: str, data_dir: Path = DATA_DIR) -> Path:
    """The path of one of the course's data files, with a clear error when it is missing."""
    path = Path(data_dir) / name
    if not path.exists():
        raise FileNotFoundError(f"The course data file {path.name} is missing from {path.parent}: "
                                "run `python -m helpers.data` to regenerate data/.")
    return path


def _products(rng: random.Random) -> list[Product]:
    products, code = [], 20600
    for category, (items, base_price, _, _) in CATEGORIES.items():
        for item in items:
            for colour in rng.sample(COLOURS, 3):
                code += rng.randint(3, 40)
                suffix = rng.choice(["", "", "A", "B"])
                price = round(base_price * rng.uniform(0.5, 1.8), 2)
                products.append(Product(f"{code}{suffix}", f"{colour} {item}", category, price))
    return products


def _age(rng: random.Random, young: bool) -> int:
    if young:
        return max(18, min(85, round(rng.gauss(27, 7))))
    return max(18, min(85, round(rng.triangular(18, 85, 42))))


def _customer(rng: random.Random, customer_id: int, young: bool = False) -> Customer:
    age = _age(rng, young)
    a = (age - 51.5) / 33.5  # age scaled to [-1, 1]
    tastes = {c: math.exp(lin * a + quad * a * a + rng.gauss(0, 0.45))
              for c, (_, _, lin, quad) in CATEGORIES.items()}
    household = max(1, min(6, round(rng.gauss(3.2 - 1.3 * a * a - 0.4 * a, 1.0))))
    income = rng.choices(["low", "middle", "high"], weights=[1.2 + a, 2.0, 1.0 + 0.6 * (1 - a * a)])[0]
    return Customer(
        customer_id=customer_id,
        age=age,
        gender=rng.choice(["F", "M"]),
        marital_status=rng.choices(["single", "married", "widowed"], weights=[1.5 - a, 1.6, max(0.05, a)])[0],
        household_size=household,
        income_band=income,
        country=rng.choices([c for c, _ in COUNTRIES], weights=[w for _, w in COUNTRIES])[0],
        tastes=tastes,
        hour=15.0 - 4.0 * a + rng.gauss(0, 1.5),
        price_level=math.exp(0.25 * (1 - a * a) + rng.gauss(0, 0.15)),
        visits=max(0.15, rng.gauss(0.75 - 0.15 * a, 0.25)),
    )


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method: exact and stable across Python versions (small means only).
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


class _InvoiceWriter:
    """Turns customers' shopping trips into UCI-style lines, dirt included."""

    def __init__(self, rng: random.Random, products: list[Product], first_invoice: int):
        self.rng = rng
        self.by_category = {c: [p for p in products if p.category == c] for c in CATEGORIES}
        self.next_invoice = first_invoice
        self.rows: list[tuple] = []

    def invoice(self, customer: Customer | None, day: datetime, holiday: float = 0.0) -> None:
        rng = self.rng
        if customer is None:  # a guest checkout: no CustomerID, behaviour of nobody in particular
            tastes, hour, price_level, country = {c: 1.0 for c in CATEGORIES}, rng.uniform(8, 20), 1.0, "United Kingdom"
            customer_id = ""
        else:
            tastes, hour, price_level, country = customer.tastes, customer.hour, customer.price_level, customer.country
            customer_id = f"{customer.customer_id}.0"
        if holiday:  # the December gift season pushes everybody towards toys, party goods and gadgets
            tastes = {c: w * (1 + holiday * (c in ("TOYS", "PARTY", "GADGETS"))) for c, w in tastes.items()}
        clock = max(6.0, min(21.5, rng.gauss(hour, 1.8)))
        when = day + timedelta(hours=int(clock), minutes=int((clock % 1) * 60))
        invoice_no = str(self.next_invoice)
        self.next_invoice += 1
        categories, weights = list(tastes), list(tastes.values())
        lines = []
        for _ in range(1 + _poisson(rng, 4.0 + 0.5 * (holiday > 0))):
            category = rng.choices(categories, weights=weights)[0]
            options = sorted(self.by_category[category], key=lambda p: p.unit_price)
            pick = min(len(options) - 1, int(rng.betavariate(2, 2 * (2.2 - price_level)) * len(options)))
            product = options[pick]
            quantity = rng.choice([1, 1, 2, 2, 3, 4, 6, 12]) * (customer.pack if customer else 1)
            lines.append((invoice_no, product.stock_code, product.description, quantity,
                          when.strftime("%Y-%m-%d %H:%M:%S"), f"{product.unit_price:.2f}", customer_id, country))
        self.rows.extend(lines)
        if rng.random() < 0.008:  # a line scanned twice: an exact duplicate row
            self.rows.append(rng.choice(lines))
        if customer is not None and rng.random() < 0.02:  # a cancelled line: C-prefixed invoice, negative quantity
            cancelled = rng.choice(lines)
            self.rows.append(("C" + str(self.next_invoice), *cancelled[1:3], -cancelled[3],
                              (when + timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S"), *cancelled[5:]))
            self.next_invoice += 1


def _month_of_trips(writer: _InvoiceWriter, customers: list[Customer], start: datetime, days: int,
                    visit_scale: float, holiday: float) -> None:
    rng = writer.rng
    trips = []
    for customer in customers:
        for _ in range(_poisson(rng, customer.visits * visit_scale)):
            trips.append((rng.randrange(days), customer))
    for _ in range(int(len(trips) * 0.04)):
        trips.append((rng.randrange(days), None))
    trips.sort(key=lambda t: (t[0], -1 if t[1] is None else t[1].customer_id))
    for day, customer in trips:
        writer.invoice(customer, start + timedelta(days=day), holiday)


def generate(seed: int = SEED, customers: int = 2000, new_customers: int = 400) -> dict[str, bytes]:
    """All data files as bytes, keyed by file name; the same seed always gives the same bytes."""
    rng = random.Random(seed)
    products = _products(rng)
    regulars = [_customer(rng, 12346 + i) for i in range(customers)]
    # December's newcomers are young and buy for the season in sets of three, which nobody did in the training year:
    # the drift that lesson 09's monitoring must catch and a retrained model must learn (no random draw is added, so
    # the year's lines stay the same).
    newcomers = [dataclasses.replace(_customer(rng, 12346 + customers + i, young=True), pack=NEWCOMER_PACK)
                 for i in range(new_customers)]

    year = _InvoiceWriter(rng, products, first_invoice=536365)
    month = YEAR_START
    while month < DRIFT_MONTH_START:
        next_month = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
        _month_of_trips(year, regulars, month, (next_month - month).days, 1.0, holiday=0.0)
        month = next_month
    drift = _InvoiceWriter(rng, products, first_invoice=year.next_invoice)
    _month_of_trips(drift, regulars + newcomers, DRIFT_MONTH_START, 31, 1.2, holiday=1.5)

    people = sorted(regulars + newcomers, key=lambda c: c.customer_id)
    return {
        PRODUCTS_FILE: _csv(PRODUCT_COLUMNS, [(p.stock_code, p.description, p.category, f"{p.unit_price:.2f}")
                                              for p in products]),
        CUSTOMERS_FILE: _csv(CUSTOMER_COLUMNS, [(c.customer_id, c.age, c.gender, c.marital_status, c.household_size,
                                                 c.income_band) for c in people]),
        TRANSACTIONS_FILE: _gzip(_csv(TRANSACTION_COLUMNS, year.rows)),
        DRIFT_MONTH_FILE: _gzip(_csv(TRANSACTION_COLUMNS, drift.rows)),
    }


def _csv(header: list[str], rows: list[tuple]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _gzip(payload: bytes) -> bytes:
    # mtime=0 and no file name in the header keep the bytes reproducible.
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as gz:
        gz.write(payload)
    return buffer.getvalue()


def write_dataset(data_dir: Path = DATA_DIR, seed: int = SEED) -> list[Path]:
    """(Re)write the data files into data_dir; returns their paths."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, payload in generate(seed).items():
        path = data_dir / name
        path.write_bytes(payload)
        paths.append(path)
    return paths



def ensure_tables(spark, tables: tuple[str, ...] = ("retail_features",),
                  notebook: str = "00_setup_and_data.ipynb") -> None:
    """Makes sure the course's tables exist; when they are missing, runs the notebook that builds them."""
    from helpers.execution import run_prerequisite
    from helpers.spark import register_workspace_tables

    missing = [table for table in tables if not spark.catalog.tableExists(table)]
    if missing:
        run_prerequisite(notebook, f"Table {', '.join(missing)} is not in this workspace yet")
        register_workspace_tables(spark)


if __name__ == "__main__":
    for written in write_dataset():
        print(f"wrote {written.name} ({written.stat().st_size // 1024} KiB)")
