"""A live `poplar serve`, queried the way commissioners' tools do: Python ADBC
(adbc-driver-flightsql) with pyarrow. Also cross-checks register counts against DuckDB
computing the same QOF rule directly over the landed Delta tables."""

import contextlib
import csv
import json
import pathlib
import signal
import subprocess

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow.flight as flight
import duckdb
import pytest
from deltalake import DeltaTable

from conftest import poplar_env, start_server

CODELISTS = pathlib.Path(__file__).resolve().parents[2] / "queries" / "codelists"


def add_user(poplar_bin, users, name, role):
    out = subprocess.run([poplar_bin, "users", "add", name, "--role", role, "--users", str(users)],
                         check=True, capture_output=True, text=True, env=poplar_env())
    token = out.stdout.strip()
    assert token.startswith("ppl_") and token not in users.read_text(), "only a hash of the token is stored"
    return token


@pytest.fixture(scope="module")
def server(landed, poplar_bin, tmp_path_factory):
    store, _ = landed
    users = tmp_path_factory.mktemp("users") / "users.toml"
    tokens = {
        "sam": add_user(poplar_bin, users, "sam", "steward"),
        "cam": add_user(poplar_bin, users, "cam", "commissioner"),
    }
    proc, _, addr = start_server(poplar_bin, store, users)
    yield f"grpc://{addr}", tokens, store
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, "SIGTERM drains and exits cleanly"


def listed_tables(conn):
    objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    return {t["table_name"] for c in objects for s in c["catalog_db_schemas"] for t in s["db_schema_tables"]}


def connect(uri, user, token):
    return flight_sql.connect(uri, db_kwargs={"username": user, "password": token}, autocommit=True)


def test_sign_in_list_tables_and_run_a_cohort_query(server):
    uri, tokens, _ = server
    with connect(uri, "sam", tokens["sam"]) as conn:
        tables = listed_tables(conn)
        assert {"patients", "clinical_events", "organisations", "codelists", "register_diabetes", "register_membership"} <= tables
        cur = conn.cursor()
        cur.execute(
            "SELECT o.pcn, count(*) AS people FROM register_membership m "
            "JOIN organisations o ON o.ods_code = m.practice GROUP BY o.pcn ORDER BY o.pcn"
        )
        rows = cur.fetchall()
        assert rows and all(n > 0 for _, n in rows)


def test_a_prepared_statement_takes_parameters(server):
    uri, tokens, _ = server
    with connect(uri, "sam", tokens["sam"]) as conn:
        cur = conn.cursor()
        counts = {}
        for register in ["diabetes", "asthma"]:
            cur.execute("SELECT count(*) FROM register_membership WHERE register = $1", parameters=(register,))
            counts[register] = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM register_diabetes")
        assert counts["diabetes"] == cur.fetchone()[0]
        assert counts["asthma"] > 0


def test_a_bearer_token_works_without_the_handshake(server):
    uri, tokens, _ = server
    kwargs = {"adbc.flight.sql.authorization_header": f"Bearer {tokens['sam']}"}
    with flight_sql.connect(uri, db_kwargs=kwargs, autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM organisations")
        assert cur.fetchone()[0] == 30


@pytest.mark.parametrize("token", ["ppl_not-a-real-token", ""])
def test_a_bad_token_gets_a_clear_error(server, token):
    uri, _, _ = server
    with pytest.raises(Exception, match="(?i)unauthenticated|wrong token|authorization"):
        with connect(uri, "sam", token) as conn:
            conn.cursor().execute("SELECT 1")
    with pytest.raises(Exception, match="(?i)unauthenticated|invalid or expired"):
        kwargs = {"adbc.flight.sql.authorization_header": "Bearer ppl_forged"}
        with flight_sql.connect(uri, db_kwargs=kwargs, autocommit=True) as conn:
            conn.cursor().execute("SELECT 1")


@pytest.mark.parametrize("sql, refused", [
    ("SET datafusion.execution.batch_size = 1", None),  # stewards may set their own session
    ("CREATE EXTERNAL TABLE leak STORED AS CSV LOCATION '/etc/passwd'", "CreateExternalTable"),
    ("COPY (SELECT * FROM patients) TO '/tmp/poplar-leak.csv' STORED AS CSV", "COPY"),
    ("INSERT INTO organisations SELECT * FROM organisations", "Insert Into"),
    ("CREATE VIEW v AS SELECT 1", "CreateView"),
    ("DROP TABLE patients", "DropTable"),
    ("SELECT * FROM '/etc/passwd'", "not found"),
])
def test_each_locked_down_statement_is_refused_by_name(server, sql, refused):
    uri, tokens, _ = server
    with connect(uri, "sam", tokens["sam"]) as conn:
        cur = conn.cursor()
        if refused is None:
            cur.execute(sql)
            return
        with pytest.raises(Exception) as error:
            cur.execute(sql)
            cur.fetchall()
        assert refused in str(error.value)
    assert not pathlib.Path("/tmp/poplar-leak.csv").exists()


def fetch(conn, sql, parameters=None):
    cur = conn.cursor()
    cur.execute(sql, parameters=parameters)
    return cur.fetch_arrow_table()


def test_a_commissioner_sees_suppressed_cells_and_rounded_counts(server):
    """Disclosure control in the engine: the commissioner's answer has the steward's groups,
    small cells suppressed (null, marked in the field metadata so a client shows *), and
    every other count rounded to 5 after sticky noise."""
    uri, tokens, _ = server
    questions = [
        "SELECT practice, count(*) AS people FROM registered_population GROUP BY practice",
        "SELECT practice, count(*) AS people FROM register_dementia GROUP BY practice",
    ]
    suppressed = 0
    for sql in questions:
        with connect(uri, "sam", tokens["sam"]) as conn:
            truth = {r["practice"]: r["people"] for r in fetch(conn, sql).to_pylist()}
        with connect(uri, "cam", tokens["cam"]) as conn:
            table = fetch(conn, sql)
            again = fetch(conn, sql)
        key = lambda t: sorted(t.to_pylist(), key=lambda r: r["practice"])
        assert key(table) == key(again), "the same question gets the same answer"
        field = table.schema.field("people")
        assert field.metadata[b"poplar.protection"] == b"count"
        assert field.metadata[b"poplar.suppressed"] == b"null"
        shown = {r["practice"]: r["people"] for r in table.to_pylist()}
        assert shown.keys() == truth.keys(), "the same groups as the steward's answer"
        for practice, true in truth.items():
            released = shown[practice]
            if true < 8:
                assert released is None, f"{practice}: {true} must show as *"
                suppressed += 1
            else:
                assert released % 5 == 0 and abs(released - true) <= 2.5 + 6 * 1.5, f"{practice}: {released} vs {true}"
        display = ["*" if v is None else str(v) for v in shown.values()]
        assert all(d == "*" or d.isdigit() for d in display)
    assert suppressed > 0, "the region is small enough to have small cells"


def test_a_commissioner_prepared_statement_goes_through_disclosure_control(server):
    uri, tokens, _ = server
    with connect(uri, "cam", tokens["cam"]) as conn:
        table = fetch(conn, "SELECT count(*) AS n FROM register_membership WHERE register = $1", parameters=("hypertension",))
        n = table.column("n")[0].as_py()
        assert n is None or n % 5 == 0


@pytest.mark.parametrize("sql, rule", [
    ("SELECT * FROM patients", "rule 1"),
    ("SELECT person_id, count(*) FROM clinical_events GROUP BY person_id", "rule 1"),
    ("SELECT max(value) FROM clinical_events", "rule 3"),
    ("SELECT count(*) FROM quarantine", "steward-only"),
    ("SELECT count(*) FROM audit_log", "steward-only"),
    ("EXPLAIN ANALYZE SELECT count(*) FROM patients", "EXPLAIN ANALYZE"),
    ("SET datafusion.execution.batch_size = 1", "SetVariable"),
])
def test_a_commissioner_is_refused_with_the_rule_named(server, sql, rule):
    uri, tokens, _ = server
    with connect(uri, "cam", tokens["cam"]) as conn:
        tables = listed_tables(conn)
        assert "patients" in tables and "quarantine" not in tables and "audit_log" not in tables
        with pytest.raises(Exception) as error:
            fetch(conn, sql)
        assert rule in str(error.value)
        assert "PermissionDenied" in str(error.value) or "permission" in str(error.value).lower()


def test_every_request_is_in_the_audit_log_and_it_verifies(server, poplar_bin):
    uri, tokens, store = server
    with connect(uri, "cam", tokens["cam"]) as conn:
        fetch(conn, "SELECT practice, count(*) AS people FROM register_dementia GROUP BY practice")
        with pytest.raises(Exception):
            fetch(conn, "SELECT * FROM patients")
    with connect(uri, "sam", tokens["sam"]) as conn:
        log = fetch(conn, "SELECT * FROM audit_log ORDER BY seq").to_pylist()
    mine = [e for e in log if e["user"] == "cam"]
    answered = [e for e in mine if e["outcome"] == "answered" and "register_dementia" in e["request"]]
    refused = [e for e in mine if e["outcome"] == "refused" and e["request"] == "SELECT * FROM patients"]
    assert answered and answered[-1]["cells_suppressed"] > 0 and answered[-1]["rows"] > 0 and answered[-1]["plan_hash"]
    assert refused and "rule 1" in refused[-1]["detail"]
    assert [e["seq"] for e in log] == list(range(len(log))), "contiguous"
    out = subprocess.run([poplar_bin, "audit", "verify", "--store", str(store)], capture_output=True, text=True, env=poplar_env())
    assert out.returncode == 0, out.stdout + out.stderr


def protobuf_field(number, payload):
    """One length-delimited protobuf field (wire type 2)."""
    def varint(n):
        out = bytearray()
        while True:
            byte, n = n & 0x7F, n >> 7
            out.append(byte | (0x80 if n else 0))
            if not n:
                return bytes(out)
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def statement_command(sql):
    """A Flight SQL `CommandStatementQuery` packed in `google.protobuf.Any`, as ADBC sends it."""
    query = protobuf_field(1, sql.encode())
    type_url = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
    return protobuf_field(1, type_url) + protobuf_field(2, query)


def chunks_with_metadata(uri, user, token, sql):
    """Every chunk of the answer to `sql`, read with pyarrow's Flight client (ADBC does not
    expose `app_metadata`): [(record batch or None, app_metadata bytes or None)]."""
    client = flight.FlightClient(uri)
    header = client.authenticate_basic_token(user, token)
    options = flight.FlightCallOptions(headers=[header])
    info = client.get_flight_info(flight.FlightDescriptor.for_command(statement_command(sql)), options)
    reader = client.do_get(info.endpoints[0].ticket, options)
    chunks = []
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            return chunks
        metadata = chunk.app_metadata.to_pybytes() if chunk.app_metadata is not None else None
        chunks.append((chunk.data, metadata))


def test_the_last_message_says_how_many_cells_were_suppressed_and_groups_withheld(server):
    """A commissioner grouping by a fine key (LSOA) gets no small group by its key; the
    answer's last message says how many were left out and how many cells suppressed, and
    the audit entry that completes the answer records the same."""
    uri, tokens, _ = server
    sql = "SELECT lsoa, sex, count(DISTINCT person_id) AS people FROM patients GROUP BY lsoa, sex"
    with connect(uri, "sam", tokens["sam"]) as conn:
        groups = fetch(conn, sql).to_pylist()
    small = sum(1 for g in groups if g["people"] < 8)
    assert small > 0, "a 1,500-person region has small LSOA x sex groups"

    chunks = chunks_with_metadata(uri, "cam", tokens["cam"], sql)
    summaries = [json.loads(m) for _, m in chunks if m]
    assert len(summaries) == 1 and chunks[-1][1], "one summary, on the last message"
    summary = summaries[0]
    assert summary["groups_withheld"] == small, summary
    assert summary["cells_suppressed"] >= small, "a withheld group's count was suppressed first"
    released = sum(batch.num_rows for batch, _ in chunks if batch is not None)
    assert released == len(groups) - small, "exactly the small groups were left out"

    with connect(uri, "sam", tokens["sam"]) as conn:
        log = fetch(conn, "SELECT outcome, groups_withheld, cells_suppressed, rows FROM audit_log "
                          f"WHERE \"user\" = 'cam' AND request = '{sql}' AND completes IS NOT NULL").to_pylist()
    assert log and log[-1] == {"outcome": "answered", "rows": released, **summary}

    # A steward's answer withholds nothing, and says so.
    chunks = chunks_with_metadata(uri, "sam", tokens["sam"], sql)
    assert json.loads(chunks[-1][1]) == {"groups_withheld": 0, "cells_suppressed": 0}


def audit_entries(store):
    return [json.loads(p.read_text()) for p in sorted((store / "audit").glob("*.json"))]


def test_a_server_killed_mid_answer_leaves_a_provisional_entry_and_a_verifiable_chain(landed, poplar_bin, tmp_path):
    """An answer's provisional audit entry is written before its first row leaves; kill -9
    the server while rows stream and the entry stands, with no completion, and the chain
    still verifies."""
    store, _ = landed
    users = tmp_path / "users.toml"
    token = add_user(poplar_bin, users, "sam", "steward")
    proc, _, addr = start_server(poplar_bin, store, users)
    sql = "SELECT value FROM generate_series(1, 50000000) AS t(value) -- killed mid-answer"
    try:
        conn = connect(f"grpc://{addr}", "sam", token)
        cur = conn.cursor()
        cur.execute(sql)
        reader = cur.fetch_record_batch()
        assert reader.read_next_batch().num_rows > 0, "rows have left the server"
        proc.kill()
        proc.wait(timeout=30)
        # The server is gone: closing the client's statement cannot reach it.
        with contextlib.suppress(Exception):
            cur.close()
            conn.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    entries = audit_entries(store)
    started = [e for e in entries if e["request"].get("text") == sql and e["outcome"]["status"] == "started"]
    assert len(started) == 1, entries[-5:]
    assert not [e for e in entries if e.get("completes") == started[0]["seq"]], "the answer never ended"
    out = subprocess.run([poplar_bin, "audit", "verify", "--store", str(store)], capture_output=True, text=True, env=poplar_env())
    assert out.returncode == 0, out.stdout + out.stderr


def test_metadata_calls_and_failed_sign_ins_are_audited(server):
    uri, tokens, store = server
    with connect(uri, "cam", tokens["cam"]) as conn:
        listed_tables(conn)
    with pytest.raises(Exception):
        with connect(uri, "cam", "ppl_not-the-token") as conn:
            conn.cursor().execute("SELECT 1")
    entries = audit_entries(store)
    calls = [e for e in entries if e["request"]["kind"] == "call" and e["user"] == "cam" and e["outcome"]["status"] == "answered"]
    assert any(e["request"]["rpc"] == "GetTables" for e in calls), "a catalog listing is audited"
    failed = [e for e in entries if e["request"]["kind"] == "sign_in" and e["user"] == "cam" and e["outcome"]["status"] == "refused"]
    assert failed and failed[-1]["outcome"]["rule"] == "unauthenticated"
    assert not any("ppl_not-the-token" in json.dumps(e) for e in entries), "a token is never logged"


def codes(name):
    with open(CODELISTS / f"{name}.csv") as f:
        return [int(r["code"]) for r in csv.DictReader(f)]


def test_register_counts_agree_with_duckdb_over_the_landed_tables(server):
    """The QOF rule computed independently, by DuckDB over the Delta tables."""
    uri, tokens, store = server
    con = duckdb.connect()
    con.register("events", DeltaTable(str(store / "clinical_events")).to_pyarrow_table(columns=["person_id", "event_date", "snomed_code"]))
    con.register("patients", DeltaTable(str(store / "patients")).to_pyarrow_table())
    # Poplar's reference date: the end of the newest period delivered.
    con.register("deliveries", DeltaTable(str(store / "deliveries")).to_pyarrow_table())
    reference = con.execute("SELECT max(period_end) FROM deliveries WHERE status = 'landed'").fetchone()[0]
    ref = f"DATE '{reference}'"
    registered = f"""
        SELECT person_id, birth_month FROM patients WHERE registered_practice IS NOT NULL
          AND registration_start <= {ref} AND (registration_end IS NULL OR registration_end >= {ref})
          AND (death_month IS NULL OR death_month > {ref})"""

    def duck(diagnosis, min_age, resolved=None):
        dx = ",".join(map(str, codes(diagnosis)))
        res = f"AND NOT EXISTS (SELECT 1 FROM events x WHERE x.person_id = d.person_id AND x.snomed_code IN ({','.join(map(str, codes(resolved)))}) AND x.event_date > d.latest AND x.event_date <= {ref})" if resolved else ""
        return con.execute(f"""
            WITH d AS (SELECT person_id, max(event_date) AS latest FROM events WHERE snomed_code IN ({dx}) AND event_date <= {ref} GROUP BY person_id),
                 r AS ({registered})
            SELECT count(DISTINCT d.person_id) FROM d JOIN r USING (person_id)
            WHERE (year({ref}) - year(r.birth_month) - CASE WHEN month({ref}) < month(r.birth_month) THEN 1 ELSE 0 END) >= {min_age} {res}
        """).fetchone()[0]

    with connect(uri, "sam", tokens["sam"]) as conn:
        cur = conn.cursor()
        for view, expected in [
            ("diabetes", duck("dm_cod", 17)),
            ("hypertension", duck("hyp_cod", 0, "hypres_cod")),
            ("asthma", duck("ast_cod", 6)),
            ("copd", duck("copd_cod", 0, "copdres_cod")),
        ]:
            cur.execute(f"SELECT count(DISTINCT person_id) FROM register_{view}")
            assert cur.fetchone()[0] == expected, view
            assert expected > 0


def test_tls_with_a_certificate_the_client_trusts(landed, poplar_bin, tmp_path):
    """`poplar serve --tls-cert/--tls-key`: ADBC connects over grpc+tls trusting the CA."""
    store, _ = landed
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    users = tmp_path / "users.toml"
    token = add_user(poplar_bin, users, "sam", "steward")
    proc, scheme, addr = start_server(poplar_bin, store, users, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        assert scheme == "grpc+tls"
        uri = f"grpc+tls://{addr}"
        kwargs = {"username": "sam", "password": token,
                  "adbc.flight.sql.client_option.tls_root_certs": cert.read_text()}
        with flight_sql.connect(uri, db_kwargs=kwargs, autocommit=True) as conn:
            cur = conn.cursor()
            cur.execute("SELECT count(*) FROM organisations")
            assert cur.fetchone()[0] == 30
        # A client that does not trust the certificate cannot connect.
        with pytest.raises(Exception):
            with flight_sql.connect(uri, db_kwargs={"username": "sam", "password": token}, autocommit=True) as conn:
                conn.cursor().execute("SELECT 1")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
