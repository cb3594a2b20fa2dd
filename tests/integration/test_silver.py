"""Silver end to end from a SQLite source through Bronze, with exact expected rows."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from tests.support import put, read, run_ok

from medallion.audit import AuditStore
from medallion.bronze.layer import app_id as bronze_app_id
from medallion.catalog import SOURCE_TABLES, bronze_schema, source_table
from medallion.pipeline import build_tasks
from medallion.runner import RunContext, RunReport, Status, run_tasks
from medallion.settings import Settings
from medallion.silver import layer as silver_layer
from medallion.silver import transform
from medallion.silver.contracts import SilverTable, silver_tables
from medallion.source.changes import ChangeSpec
from medallion.source.db import open_source
from medallion.storage import Lake

T0 = datetime(2018, 3, 1, 9, 0, 0)
C1, C2, C3 = ("a" * 32, "b" * 32, "c" * 32)
O1, O2, O3, O4, O5 = (f"{i}" * 32 for i in range(1, 6))
UNKNOWN = "f" * 32


def table_of(name: str, rows: list[dict]) -> pa.Table:
    schema = source_table(name).arrow_schema()
    full = [{f.name: r.get(f.name) for f in schema} for r in rows]
    return pa.Table.from_pylist(full, schema=schema)


def customer(
    cid: str,
    *,
    city: str = "sao paulo",
    zip_: str = "01037",
    state: str = "SP",
    at: datetime = T0,
    deleted: datetime | None = None,
) -> dict:
    return {
        "customer_id": cid,
        "customer_unique_id": cid[::-1],
        "customer_zip_code_prefix": zip_,
        "customer_city": city,
        "customer_state": state,
        "updated_at": at,
        "deleted_at": deleted,
    }


def order(
    oid: str,
    cid: str,
    *,
    status: str = "delivered",
    at: datetime = T0,
    purchase: datetime = T0 - timedelta(days=10),
    delivered: datetime | None = T0,
    deleted: datetime | None = None,
) -> dict:
    return {
        "order_id": oid,
        "customer_id": cid,
        "order_status": status,
        "order_purchase_timestamp": purchase,
        "order_approved_at": purchase,
        "order_delivered_carrier_date": None,
        "order_delivered_customer_date": delivered,
        "order_estimated_delivery_date": purchase + timedelta(days=20),
        "updated_at": at,
        "deleted_at": deleted,
    }


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = Settings(home=tmp_path / "home", parallelism=2, retries=0)
    s.home.mkdir(parents=True)
    with open_source(s.source_location, create=True) as db:
        db.create_tables(SOURCE_TABLES)
    return s


def load(settings: Settings, name: str, rows: list[dict]) -> None:
    with open_source(settings.source_location) as db:
        db.upsert(source_table(name), table_of(name, rows))


def run(
    settings: Settings, tables=("customers", "orders"), full_refresh: bool = False
) -> RunReport:
    ctx = RunContext(
        run_id=f"r{datetime.now().timestamp()}", settings=settings, full_refresh=full_refresh
    )
    audit = AuditStore(settings.audit_location).open()
    try:
        report = run_tasks(build_tasks(["bronze", "silver"], list(tables)), ctx, [audit])
    finally:
        audit.close()
    failed = [(o.task.name, o.error) for o in report.outcomes if o.status is not Status.SUCCESS]
    assert not failed, failed
    return report


def silver(settings: Settings, name: str, cols: list[str]) -> list[tuple]:
    data = DeltaTable(f"{settings.lake_location}/silver/{name}").to_pyarrow_table(columns=cols)
    return sorted(tuple(r.values()) for r in data.to_pylist())


def quarantine(settings: Settings, name: str) -> list[tuple]:
    uri = f"{settings.lake_location}/quarantine/{name}"
    if not DeltaTable.is_deltatable(uri):
        return []
    data = DeltaTable(uri).to_pyarrow_table(columns=[source_table(name).row_key[0], "_rule"])
    return sorted(tuple(r.values()) for r in data.to_pylist())


def test_conform_quarantine_and_reconcile(settings: Settings) -> None:
    load(
        settings,
        "olist_customers_dataset",
        [
            customer(C1, city="  São   Paulo / sp "),
            customer(C2, zip_="1037", state=" rj ", city="Rio de Janeiro"),
            customer(C3, zip_="ABCDE"),
        ],
    )
    load(
        settings,
        "olist_orders_dataset",
        [
            order(O1, C1),
            order(O2, UNKNOWN),
            order(O3, C2, status="lost"),
            order(O4, C2, delivered=T0 - timedelta(days=30)),
            order(O5, C2, status="delivered", delivered=None),
        ],
    )
    report = run(settings)
    assert silver(
        settings,
        "customers",
        [
            "customer_id",
            "customer_zip_code_prefix",
            "customer_city",
            "customer_state",
            "is_deleted",
        ],
    ) == [
        (C1, "01037", "sao paulo", "SP", False),
        (C2, "01037", "rio de janeiro", "RJ", False),
    ]
    assert quarantine(settings, "customers") == [(C3, "customer_zip_code_prefix_format")]
    assert silver(settings, "orders", ["order_id", "customer_id"]) == [(O1, C1), (O5, C2)]
    assert quarantine(settings, "orders") == [
        (O2, "customer_id_exists_in_customers"),
        (O3, "order_status_accepted"),
        (O4, "delivered_after_purchase"),
    ]
    by_task = {o.task.name: o.result for o in report.outcomes}
    orders = by_task["silver.orders"]
    assert (orders.rows_read, orders.rows_written, orders.rows_quarantined) == (5, 2, 3)
    assert orders.metrics["warnings"] == {"delivered_has_date": 1}
    reasons = DeltaTable(f"{settings.lake_location}/quarantine/orders").to_pyarrow_table(
        columns=["_reason"]
    )
    assert "order_status is not one of created" in " ".join(reasons["_reason"].to_pylist())


def test_rerun_writes_nothing_and_changes_are_merged(settings: Settings) -> None:
    load(settings, "olist_customers_dataset", [customer(C1), customer(C2)])
    load(settings, "olist_orders_dataset", [order(O1, C1), order(O2, C2)])
    run(settings)
    version = DeltaTable(f"{settings.lake_location}/silver/orders").version()
    report = run(settings)
    assert all(o.result.rows_written == 0 for o in report.outcomes)
    assert DeltaTable(f"{settings.lake_location}/silver/orders").version() == version

    # update, soft delete, hard delete, and a key that comes back after a delete
    t1 = T0 + timedelta(days=1)
    load(
        settings,
        "olist_orders_dataset",
        [
            order(O1, C1, status="canceled", at=t1),
            order(O2, C2, at=t1, deleted=t1),
        ],
    )
    with open_source(settings.source_location) as db:
        db.delete_rows(source_table("customers"), pa.table({"customer_id": [C2]}))
    run(settings)
    assert silver(settings, "orders", ["order_id", "order_status", "is_deleted", "deleted_at"]) == [
        (O1, "canceled", False, None),
        (O2, "delivered", True, t1),
    ]
    assert silver(settings, "customers", ["customer_id", "customer_city", "is_deleted"]) == [
        (C1, "sao paulo", False),
        (C2, "sao paulo", True),  # a hard delete keeps the last values, flagged
    ]
    t2 = t1 + timedelta(days=1)
    load(settings, "olist_orders_dataset", [order(O2, C2, status="shipped", at=t2)])
    load(settings, "olist_customers_dataset", [customer(C2, city="santos", at=t2)])
    run(settings)
    assert silver(settings, "orders", ["order_id", "order_status", "is_deleted", "deleted_at"]) == [
        (O1, "canceled", False, None),
        (O2, "shipped", False, None),
    ]
    assert silver(settings, "customers", ["customer_id", "customer_city", "is_deleted"]) == [
        (C1, "sao paulo", False),
        (C2, "santos", False),
    ]
    # a full rebuild from Bronze gives the same rows
    before = silver(
        settings, "orders", ["order_id", "order_status", "is_deleted", "deleted_at", "updated_at"]
    )
    run(settings, full_refresh=True)
    assert (
        silver(
            settings,
            "orders",
            ["order_id", "order_status", "is_deleted", "deleted_at", "updated_at"],
        )
        == before
    )


def test_new_keys_are_appended_and_a_change_to_a_stored_key_is_merged(
    settings: Settings,
) -> None:
    """A batch whose keys Silver does not hold is appended (a MERGE would read every stored
    row to find no match); one that changes a stored key is a MERGE. Either way the rows are
    those of a full rebuild."""
    load(settings, "olist_customers_dataset", [customer(C1)])
    load(settings, "olist_orders_dataset", [order(O1, C1)])
    run(settings)
    uri = f"{settings.lake_location}/silver/orders"
    t1 = T0 + timedelta(days=1)
    load(settings, "olist_orders_dataset", [order(O2, C1, at=t1), order(O3, C1, at=t1)])
    report = run(settings)
    written = {o.task.name: o.result for o in report.outcomes}["silver.orders"]
    assert written.rows_written == 2 and written.metrics["files_rewritten"] == 0
    assert DeltaTable(uri).history(1)[0]["operation"] == "WRITE"
    t2 = t1 + timedelta(days=1)
    load(settings, "olist_orders_dataset", [order(O1, C1, status="canceled", at=t2)])
    load(settings, "olist_orders_dataset", [order(O4, C1, at=t2)])
    report = run(settings)
    written = {o.task.name: o.result for o in report.outcomes}["silver.orders"]
    assert written.rows_written == 2 and written.metrics["files_rewritten"] >= 1
    assert DeltaTable(uri).history(1)[0]["operation"] == "MERGE"
    held = silver(settings, "orders", ["order_id", "order_status", "updated_at"])
    assert held == [(O1, "canceled", t2), (O2, "delivered", t1), (O3, "delivered", t1),
                    (O4, "delivered", t2)]  # fmt: skip
    run(settings, full_refresh=True)
    assert silver(settings, "orders", ["order_id", "order_status", "updated_at"]) == held


def append_bronze(settings: Settings, name: str, rows: list[dict], op: str = "upsert") -> None:
    """Write rows straight into Bronze, as a late or replayed extraction would."""
    table = source_table(name)
    lake = Lake(settings.lake_location)
    schema = bronze_schema(table)
    now = datetime(2026, 1, 1)
    full = [
        {
            **{f.name: r.get(f.name) for f in schema},
            "_run_id": "manual",
            "_ingested_at": now,
            "_source_updated_at": r["updated_at"],
            "_op": op,
            "_ingest_date": now.date(),
        }
        for r in rows
    ]
    bronze = lake.table("bronze", table.name)
    current = bronze.app_version(bronze_app_id(table))
    bronze.append(
        pa.Table.from_pylist(full, schema=schema),
        partition_by=["_ingest_date"],
        transactions={bronze_app_id(table): current or 0},
        expected={bronze_app_id(table): current},
        metadata={"run_id": "manual"},
    )


def test_late_older_update_never_overwrites_and_ties_are_deterministic(settings: Settings) -> None:
    load(
        settings,
        "olist_customers_dataset",
        [customer(C1, city="campinas", at=T0 + timedelta(hours=5))],
    )
    run(settings, tables=("customers",))
    append_bronze(settings, "olist_customers_dataset", [customer(C1, city="old town", at=T0)])
    report = run(settings, tables=("customers",))
    result = {o.task.name: o.result for o in report.outcomes}["silver.customers"]
    assert result.rows_written == 0 and result.metrics["stale_or_unchanged"] == 1
    assert silver(settings, "customers", ["customer_id", "customer_city"]) == [(C1, "campinas")]

    # two versions with the same updated_at in one batch: the later-ingested one wins,
    # and a delete at the same instant wins over an upsert
    t = T0 + timedelta(hours=9)
    append_bronze(
        settings,
        "olist_customers_dataset",
        [customer(C2, city="x", at=t), customer(C2, city="y", at=t)],
    )
    run(settings, tables=("customers",))
    assert silver(settings, "customers", ["customer_id", "customer_city"])[1][1] in {"x", "y"}
    first = silver(settings, "customers", ["customer_id", "customer_city"])
    append_bronze(
        settings, "olist_customers_dataset", [customer(C2, city="z", at=t, deleted=t)], op="delete"
    )
    run(settings, tables=("customers",))
    assert silver(settings, "customers", ["customer_id", "is_deleted"]) == [(C1, False), (C2, True)]
    assert first[0] == (C1, "campinas")


def test_duplicates_in_one_batch_are_superseded_and_counted(settings: Settings) -> None:
    load(settings, "olist_customers_dataset", [customer(C1, at=T0)])
    run(settings, tables=("customers",))
    append_bronze(
        settings,
        "olist_customers_dataset",
        [
            customer(C1, city="a", at=T0 + timedelta(hours=1)),
            customer(C1, city="b", at=T0 + timedelta(hours=3)),
            customer(C1, city="c", at=T0 + timedelta(hours=2)),
        ],
    )
    report = run(settings, tables=("customers",))
    result = {o.task.name: o.result for o in report.outcomes}["silver.customers"]
    assert (result.rows_read, result.rows_written, result.metrics["superseded"]) == (3, 1, 2)
    assert silver(settings, "customers", ["customer_id", "customer_city"]) == [(C1, "b")]


def test_real_olist_files_flow_to_silver(settings: Settings, olist_dir: Path) -> None:
    from medallion.source.kaggle_csv import load_csv_dir

    with open_source(settings.source_location) as db:
        load_csv_dir(db, olist_dir, loaded_at=T0)
    report = run(settings, tables=("products", "sellers", "product_category_name_translation"))
    products = DeltaTable(f"{settings.lake_location}/silver/products").to_pyarrow_table()
    assert products.num_rows == 32_951
    assert products["product_category_name"].null_count == 610
    untranslated = products.filter(pa.compute.invert(products["category_translated"]))
    assert sorted(set(untranslated["product_category_name"].to_pylist())) == [
        "pc_gamer",
        "portateis_cozinha_e_preparadores_de_alimentos",
    ]
    assert set(untranslated["product_category_name_english"].to_pylist()) == {
        "pc_gamer",
        "portateis_cozinha_e_preparadores_de_alimentos",
    }
    sellers = DeltaTable(f"{settings.lake_location}/silver/sellers").to_pyarrow_table()
    zips = sellers["seller_zip_code_prefix"].to_pylist()
    assert all(len(z) == 5 for z in zips) and "01044" in zips
    assert sellers.num_rows == 3_095 and quarantine(settings, "sellers") == []
    by_task = {o.task.name: o.result for o in report.outcomes}
    assert by_task["silver.products"].metrics["warnings"] == {"category_present": 610}
    # '04482255' and 'vendas@creditparts.com.br' are not cities: cleared, seller kept
    assert by_task["silver.sellers"].metrics["warnings"] == {"seller_city_present": 2}
    cities = set(sellers["seller_city"].to_pylist())
    assert "sao paulo" in cities and not any(c and "/" in c for c in cities)


def test_generated_dirty_rows_all_land_in_quarantine(settings: Settings) -> None:
    from medallion.source.defects import find_defect
    from medallion.source.generator import GeneratorConfig, generate, write_to_source

    data = generate(GeneratorConfig(scale=0.02, seed=7, dirty_rate=0.02))
    with open_source(settings.source_location) as db:
        write_to_source(db, data)
    report = run(settings, tables=())
    lake = Lake(settings.lake_location)
    dirty = data.dirty.to_pylist()
    assert len(dirty) > 50
    for name in {d["table"] for d in dirty}:
        keys = source_table(name).row_key
        rows = lake.read("quarantine", name, [*keys, "_rule"]).to_pylist()
        rules_by_key = {"|".join(str(r[k]) for k in keys): set(r["_rule"].split(",")) for r in rows}
        for d in (d for d in dirty if d["table"] == name):
            expected = set(find_defect(name, d["defect"]).silver_rules)
            got = rules_by_key.get(d["key"], set())
            assert got & expected, (name, d, got)
    # every quarantined row is dirty, or refers to a row that was quarantined (a cascade)
    dirty_keys = {(d["table"], d["key"]) for d in dirty}
    for name in ("orders", "order_items", "order_reviews", "order_payments"):
        keys = source_table(name).row_key
        for r in (lake.read("quarantine", name, [*keys, "_rule"]) or pa.table({})).to_pylist():
            key = "|".join(str(r[k]) for k in keys)
            assert (name, key) in dirty_keys or "_exists_in_" in r["_rule"], (name, r)
    # rows in = rows merged + quarantined + superseded for every Silver task
    for o in report.outcomes:
        if o.task.layer == "silver" and o.task.table != "geolocation":
            m = o.result.metrics
            assert o.result.rows_read == (
                m["merge_source_rows"] + o.result.rows_quarantined + m["superseded"]
            ), o.task.name
    # money: what Silver holds plus what quarantine holds is exactly what the source holds
    for name, column in (
        ("order_items", "price"),
        ("order_items", "freight_value"),
        ("order_payments", "payment_value"),
    ):
        source_sum = pa.compute.sum(data.tables[name][column]).as_py()
        silver_sum = pa.compute.sum(lake.read("silver", name, [column])[column]).as_py()
        q = lake.read("quarantine", name, [column])
        quarantined_sum = pa.compute.sum(q[column]).as_py() if q is not None else 0
        assert silver_sum + (quarantined_sum or 0) == source_sum, (name, column)


def test_a_new_translation_relabels_existing_products(settings: Settings) -> None:
    p1, p2 = "a1" * 16, "b2" * 16
    load(
        settings,
        "product_category_name_translation",
        [
            {
                "product_category_name": "perfumaria",
                "product_category_name_english": "perfumery",
                "updated_at": T0,
            },
        ],
    )
    load(
        settings,
        "products",
        [
            {"product_id": p1, "product_category_name": "perfumaria", "updated_at": T0},
            {"product_id": p2, "product_category_name": "pc_gamer", "updated_at": T0},
        ],
    )
    tables = ("products", "product_category_name_translation")
    run(settings, tables=tables)
    cols = ["product_id", "product_category_name_english", "category_translated", "updated_at"]
    assert silver(settings, "products", cols) == [
        (p1, "perfumery", True, T0),
        (p2, "pc_gamer", False, T0),
    ]
    t1 = T0 + timedelta(days=2)
    load(
        settings,
        "product_category_name_translation",
        [
            {
                "product_category_name": "perfumaria",
                "product_category_name_english": "perfume",
                "updated_at": t1,
            },
            {
                "product_category_name": "pc_gamer",
                "product_category_name_english": "gaming_pc",
                "updated_at": t1,
            },
        ],
    )
    # p1 also changes in the same batch: it comes from Bronze, p2 is relabelled
    load(
        settings,
        "products",
        [
            {
                "product_id": p1,
                "product_category_name": "perfumaria",
                "product_weight_g": 5,
                "updated_at": t1 + timedelta(hours=1),
            },
        ],
    )
    report = run(settings, tables=tables)
    result = {o.task.name: o.result for o in report.outcomes}["silver.products"]
    assert (result.rows_read, result.metrics["lookup_refreshed"]) == (1, 1)
    assert silver(settings, "products", cols) == [
        (p1, "perfume", True, t1 + timedelta(hours=1)),
        (p2, "gaming_pc", True, T0),  # a relabel never changes the row's own updated_at
    ]
    version = DeltaTable(f"{settings.lake_location}/silver/products").version()
    run(settings, tables=tables)  # nothing moved: nothing written
    assert DeltaTable(f"{settings.lake_location}/silver/products").version() == version
    # a translation that disappears no longer translates
    with open_source(settings.source_location) as db:
        db.delete_rows(
            source_table("product_category_name_translation"),
            pa.table({"product_category_name": ["pc_gamer"]}),
        )
    run(settings, tables=tables)
    got = {r[0]: r[1:3] for r in silver(settings, "products", cols)}
    assert got[p2] == ("pc_gamer", False)


def test_a_row_waiting_for_its_parent_is_released_when_the_parent_arrives(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked: list[str] = []  # the tables whose quarantine was read for rows to retry
    retry_candidates = silver_layer._retry_candidates

    def looking(spec: SilverTable, *args: Any) -> pa.Table | None:
        looked.append(spec.name)
        return retry_candidates(spec, *args)

    monkeypatch.setattr(silver_layer, "_retry_candidates", looking)
    late_customer = "9" * 32
    load(settings, "olist_customers_dataset", [customer(C1)])
    load(settings, "olist_orders_dataset", [order(O1, C1), order(O2, late_customer)])
    run(settings)
    assert quarantine(settings, "orders") == [(O2, "customer_id_exists_in_customers")]
    # another run before the parent arrives: still held, not quarantined twice, and not even
    # looked at again (neither the parents, the quarantine nor the orders moved since)
    looked.clear()
    report = run(settings)
    assert quarantine(settings, "orders") == [(O2, "customer_id_exists_in_customers")]
    orders = {o.task.name: o.result for o in report.outcomes}["silver.orders"]
    assert orders.rows_written == 0 and looked == []
    # the customer arrives: the order is released into Silver, counted, and stays put after
    load(settings, "olist_customers_dataset", [customer(late_customer, at=T0 + timedelta(days=1))])
    report = run(settings)
    orders = {o.task.name: o.result for o in report.outcomes}["silver.orders"]
    assert orders.metrics["released_from_quarantine"] == 1 and looked == ["orders"]
    assert silver(settings, "orders", ["order_id", "customer_id"]) == [
        (O1, C1),
        (O2, late_customer),
    ]
    report = run(settings)
    orders = {o.task.name: o.result for o in report.outcomes}["silver.orders"]
    assert orders.rows_written == 0 and "retried_from_quarantine" not in orders.metrics


def test_a_parent_table_made_again_at_the_same_version_releases_a_waiting_row(
    settings: Settings,
) -> None:
    """A retry is skipped while the tables it reads are as the last one left them, compared
    by table id too: Silver customers deleted and rebuilt (version 0 again, now holding the
    late customer) is another table, and the waiting order is released."""
    late_customer = "9" * 32
    load(settings, "olist_customers_dataset", [customer(C1)])
    load(settings, "olist_orders_dataset", [order(O1, C1), order(O2, late_customer)])
    run(settings)
    customers = f"{settings.lake_location}/silver/customers"
    assert DeltaTable(customers).version() == 0
    load(settings, "olist_customers_dataset", [customer(late_customer, at=T0 + timedelta(days=1))])
    shutil.rmtree(customers)  # rebuilt by the next run from every Bronze row
    report = run(settings)
    assert DeltaTable(customers).version() == 0  # made again: the same version as before
    orders = {o.task.name: o.result for o in report.outcomes}["silver.orders"]
    assert orders.metrics["released_from_quarantine"] == 1
    assert silver(settings, "orders", ["order_id", "customer_id"]) == [
        (O1, C1),
        (O2, late_customer),
    ]


def test_a_batch_of_only_rejected_rows_is_quarantined_once(settings: Settings) -> None:
    load(settings, "customers", [customer(C1)])
    run(settings, tables=("customers",))
    load(settings, "customers", [customer(C2, state="S1"), customer(C3, state="S2")])
    first = run(settings, tables=("customers",))
    load(settings, "customers", [customer(C1, state="S3", at=T0 + timedelta(hours=1))])
    second = run(settings, tables=("customers",))
    assert [r[0] for r in quarantine(settings, "customers")] == [C1, C2, C3]  # once each
    before = [
        {o.task.name: o.result for o in r.outcomes}["silver.customers"].metrics
        for r in (first, second)
    ]
    assert before[1]["bronze_version_before"] == before[0]["bronze_version_after"]


# -- a change set larger than one batch: validated in key groups -------------------------------
EVERY_CHANGE = ChangeSpec(
    seed=5, new_orders=60, status_updates=40, customer_moves=20, product_updates=10,
    seller_moves=5, soft_deletes=10, hard_deletes=10, late_updates=10, dirty=30,
)  # fmt: skip
RUN_COLUMNS = (  # what differs between two runs of the same data
    *("_run_id", "_quarantine_run_id", "_quarantined_at", "_bronze_run_id"),
    *("_ingested_at", "_ingest_date"),
)


def lake_state(settings: Settings, layer: str) -> dict[str, list[tuple]]:
    """Every table of a layer, rows sorted, without the columns that name the run."""
    state = {}
    for table in silver_tables():
        uri = f"{settings.lake_location}/{layer}/{table.name}"
        if DeltaTable.is_deltatable(uri):
            data = DeltaTable(uri).to_pyarrow_table()
            data = data.drop_columns([c for c in RUN_COLUMNS if c in data.column_names])
            state[table.name] = sorted(map(repr, (tuple(r.values()) for r in data.to_pylist())))
    return state


def test_key_groups_give_what_one_batch_gives(tmp_path: Path) -> None:
    """The same source through Silver in one batch and in groups of about 300 rows (the first
    build overwrites, the change batch merges); both layers row for row, and every row is
    accounted for in each group."""
    from medallion.source.changes import apply_changes
    from medallion.source.generator import GeneratorConfig, generate, write_to_source

    data = generate(GeneratorConfig(scale=0.02, seed=11, dirty_rate=0.02))
    states = []
    for batch_rows in (10**9, 300):
        s = Settings(home=tmp_path / f"b{batch_rows}", retries=0, silver_batch_rows=batch_rows)
        s.home.mkdir(parents=True)
        with open_source(s.source_location, create=True) as db:
            db.create_tables(SOURCE_TABLES)
            write_to_source(db, data)
        first = run(s, tables=())
        with open_source(s.source_location) as db:
            apply_changes(db, EVERY_CHANGE)
        second = run(s, tables=())
        split = {
            o.task.table
            for report in (first, second)
            for o in report.outcomes
            if o.task.layer == "silver" and o.result and o.result.metrics.get("batches_split")
        }
        if batch_rows > 300:
            assert split == set()
        else:  # order_reviews too: grouped by order_id, the key column its content includes
            assert {"orders", "order_items", "customers", "order_reviews"} <= split
        states.append((lake_state(s, "silver"), lake_state(s, "quarantine")))
    assert states[0] == states[1]


def review(rid: str, oid: str, *, message: str = "chegou antes", at: datetime = T0) -> dict:
    return {
        "review_id": rid,
        "order_id": oid,
        "review_score": 5,
        "review_comment_title": None,
        "review_comment_message": message,
        "review_creation_date": T0 - timedelta(days=1),
        "review_answer_timestamp": T0,
        "updated_at": at,
        "deleted_at": None,
    }


def test_a_review_repeating_another_keys_content_is_quarantined_in_its_batch_and_later(
    settings: Settings,
) -> None:
    r1, r2, r3, r4, r5 = (f"{c}" * 32 for c in "56789")
    tables = ("customers", "orders", "order_reviews")
    load(settings, "olist_customers_dataset", [customer(C1)])
    load(settings, "olist_orders_dataset", [order(O1, C1), order(O2, C1)])
    load(
        settings,
        "olist_order_reviews_dataset",
        [
            review(r1, O1),
            review(r2, O1, at=T0 + timedelta(hours=1)),  # later: the copy
            review(r3, O1),  # same instant as r1: the greater key is the copy
            review(r4, O2, message="outro"),
        ],
    )
    run(settings, tables=tables)
    rule = "duplicate_content"
    assert silver(settings, "order_reviews", ["review_id"]) == [(r1,), (r4,)]
    assert quarantine(settings, "order_reviews") == [(r2, rule), (r3, rule)]
    load(
        settings,
        "olist_order_reviews_dataset",
        [
            review(r1, O1, at=T0 + timedelta(hours=2)),  # its own content again: no copy
            review(r5, O2, message="outro", at=T0 + timedelta(hours=2)),  # r4's, in Silver
        ],
    )
    run(settings, tables=tables)
    assert silver(settings, "order_reviews", ["review_id"]) == [(r1,), (r4,)]
    assert quarantine(settings, "order_reviews") == [(r2, rule), (r3, rule), (r5, rule)]


def test_the_geolocation_aggregate_keeps_the_latest_row_of_each_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per zip prefix: the median of its current points (deleted ones out, a point equal to
    one with a smaller id counted once). The first load holds one row per id and is not
    ranked; a later one ranks each id's rows; a full refresh gives the same aggregate."""
    s = Settings(home=tmp_path / "home", retries=0, checks=False, report_on_run=False)
    with open_source(s.source_location, create=True) as db:
        db.create_tables(SOURCE_TABLES)
    ranked: list[bool] = []
    once = transform._one_row_per_point
    monkeypatch.setattr(
        transform, "_one_row_per_point", lambda *a: ranked.append(not once(*a)) or not ranked[-1]
    )

    def point(i: int, zip_code: str, lat: float, lng: float, at: datetime, **more: Any) -> dict:
        city, state = ("sao paulo", "SP") if zip_code < "1" else ("rio de janeiro", "RJ")
        return {"geolocation_id": i, "geolocation_zip_code_prefix": zip_code,
                "geolocation_lat": lat, "geolocation_lng": lng, "geolocation_city": city,
                "geolocation_state": state, "updated_at": at, **more}  # fmt: skip

    def aggregate() -> list[tuple]:
        rows = read(s, "silver", "geolocation").sort_by("zip_code_prefix").to_pylist()
        names = ("zip_code_prefix", "lat", "lng", "city", "state", "point_count")
        return [tuple(r[n] for n in names) for r in rows]

    t1 = T0 + timedelta(hours=1)
    put(s, "geolocation", [
        point(1, "01001", -23.50, -46.35, T0),
        point(2, "01001", -23.75, -46.75, T0),
        point(3, "01001", -23.50, -46.35, T0),  # point 1 again
        point(4, "20040", -22.90, -43.20, T0),
    ])  # fmt: skip
    run_ok(s, ["bronze", "silver"])
    assert aggregate() == [
        ("01001", -23.625, -46.55, "sao paulo", "SP", 2),
        ("20040", -22.90, -43.20, "rio de janeiro", "RJ", 1),
    ]
    put(s, "geolocation", [
        point(2, "20040", -22.80, -43.10, t1),  # moved
        point(4, "20040", -22.90, -43.20, t1, deleted_at=t1),
    ])  # fmt: skip
    run_ok(s, ["bronze", "silver"])
    after = [
        ("01001", -23.50, -46.35, "sao paulo", "SP", 1),
        ("20040", -22.80, -43.10, "rio de janeiro", "RJ", 1),
    ]
    assert aggregate() == after
    assert ranked == [False, True]
    run_ok(s, ["bronze", "silver"], full_refresh=True)
    assert aggregate() == after and ranked[-1]
