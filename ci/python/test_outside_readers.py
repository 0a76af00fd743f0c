"""What Poplar lands is readable by tools it does not control: the `deltalake` Python
package (delta-rs's Python binding) with pyarrow, and DuckDB over the Arrow tables."""

import json

import duckdb
from deltalake import DeltaTable

# The documented schema (README.md, "Landed tables"), as Delta types.
SCHEMA = {
    "patients": {
        "person_id": "long", "source_org": "string", "birth_month": "date", "sex": "string",
        "ethnic_category": "string", "ethnicity_group": "string", "lsoa": "string", "imd_decile": "integer",
        "registered_practice": "string", "registration_start": "date", "registration_end": "date",
        "death_month": "date",
    },
    "clinical_events": {
        "person_id": "long", "source_org": "string", "event_date": "date", "code_system": "string",
        "code": "string", "snomed_code": "long", "value": "double", "unit": "string", "setting": "string",
    },
    "medications": {
        "person_id": "long", "source_org": "string", "issue_date": "date", "dmd_code": "long", "quantity": "double",
    },
    "encounters": {
        "person_id": "long", "source_org": "string", "setting": "string", "start_date": "date",
        "end_date": "date", "encounter_type": "string", "cost": "double", "encounter_snomed": "long",
    },
    "organisations": {
        "ods_code": "string", "name": "string", "org_type": "string", "feed_format": "string", "pcn": "string",
        "pcn_name": "string", "sub_icb": "string", "icb": "string",
    },
    "quarantine": {
        "load_id": "string", "source_org": "string", "delivery": "string", "file": "string", "line": "long",
        "reason": "string", "detail": "string", "quarantined_at": "timestamp",
    },
}
PERSONAL = ["patients", "clinical_events", "medications", "encounters"]


def snapshot_versions(store):
    """The table versions of the newest snapshot: the consistent cut Poplar's readers use."""
    snaps = DeltaTable(str(store / "snapshots")).to_pyarrow_table().to_pylist()
    latest = max(snaps, key=lambda r: r["snapshot"])
    return json.loads(latest["table_versions"])


def test_every_table_has_the_documented_schema_and_partitioning(landed):
    store, _ = landed
    for table, columns in SCHEMA.items():
        dt = DeltaTable(str(store / table))
        found = {f.name: f.type.type for f in dt.schema().fields}
        assert found == columns, table
        expected_partitions = ["source_org"] if table in PERSONAL else []
        assert dt.metadata().partition_columns == expected_partitions, table


def test_row_counts_match_the_load_report_at_the_snapshot_version(landed):
    store, report = landed
    versions = snapshot_versions(store)
    for table in PERSONAL:
        dt = DeltaTable(str(store / table), version=versions[table])
        assert dt.to_pyarrow_table().num_rows == report["rows_landed"][table], table
    quarantined = DeltaTable(str(store / "quarantine"), version=versions["quarantine"]).to_pyarrow_table()
    assert quarantined.num_rows == sum(report["quarantined"].values())


def test_duckdb_answers_a_cohort_question_over_what_landed(landed):
    store, _ = landed
    events = DeltaTable(str(store / "clinical_events")).to_pyarrow_table(columns=["person_id", "snomed_code", "event_date"])
    patients = DeltaTable(str(store / "patients")).to_pyarrow_table(columns=["person_id", "source_org", "sex"])
    con = duckdb.connect()
    con.register("events", events)
    con.register("patients", patients)
    people, with_bp = con.execute(
        """
        SELECT count(DISTINCT p.person_id),
               count(DISTINCT CASE WHEN e.snomed_code = 72313002 THEN p.person_id END)
        FROM patients p LEFT JOIN events e USING (person_id)
        """
    ).fetchone()
    assert people > 1000
    assert 0 < with_bp < people
    # Pseudonyms link sources: people seen in secondary care are the same person_id at a GP.
    unlinked = con.execute(
        """
        SELECT count(DISTINCT person_id) FROM patients
        WHERE source_org NOT LIKE 'X9%'
          AND person_id NOT IN (SELECT person_id FROM patients WHERE source_org LIKE 'X9%')
        """
    ).fetchone()[0]
    secondary = con.execute("SELECT count(DISTINCT person_id) FROM patients WHERE source_org NOT LIKE 'X9%'").fetchone()[0]
    assert unlinked * 100 < secondary
