"""`poplar serve --cluster`: a real `poplar scheduler` and two `poplar executor` processes
on 127.0.0.1 against the SeaweedFS S3 store that ci/test starts, beside a plain
`poplar serve` over the same store. A steward's answers are equal cell for cell, a
commissioner's are released identically (same suppression, same noise), the red team is
refused alike, `EXPLAIN` shows a commissioner the release and a steward the cluster's part,
and a query during
which an executor is killed is retried or fails cleanly while the next one succeeds."""

import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid

import adbc_driver_flightsql.dbapi as flight_sql
import pytest

from conftest import poplar_env, start_server
from ports import free_port
from test_flight_sql import add_user

REGISTERS = ["diabetes", "hypertension", "asthma", "copd", "chd", "atrial_fibrillation", "ckd", "heart_failure",
             "dementia", "depression", "stroke_tia"]
# Seconds without a heartbeat before the scheduler takes an executor as lost.
EXECUTOR_TIMEOUT_SECS = 6

REGISTER_QUESTIONS = [f"SELECT practice, count(*) AS n FROM register_{r} GROUP BY practice" for r in REGISTERS]
UTILITY_QUESTIONS = [
    "SELECT practice, count(*) AS n FROM registered_population GROUP BY practice",
    "SELECT sex, count(DISTINCT person_id) AS n FROM patients GROUP BY sex",
    "SELECT setting, count(*) AS n, sum(cost) AS total FROM encounters GROUP BY setting",
    "SELECT o.pcn, count(*) AS n FROM register_membership m JOIN organisations o ON o.ods_code = m.practice "
    "GROUP BY o.pcn",
    "SELECT c.codelist, count(DISTINCT e.person_id) AS n FROM clinical_events e JOIN codelists c "
    "ON e.snomed_code = c.code GROUP BY c.codelist",
    "SELECT source_org, count(*) AS n FROM medications GROUP BY ROLLUP (source_org)",
]
# Attacks from engine/tests/slt/red_team.slt: each must be refused with the same rule, or
# answered with the same suppressed and rounded cells, by both servers.
RED_TEAM = [
    "SELECT * FROM patients",
    "SELECT person_id, count(*) FROM clinical_events GROUP BY person_id",
    "SELECT max(value) FROM clinical_events",
    "SELECT count(*) FROM quarantine",
    "SELECT lsoa, birth_month, count(*) AS n FROM patients GROUP BY lsoa, birth_month",
    "SELECT practice, count(*) AS n FROM register_dementia WHERE practice = (SELECT min(practice) "
    "FROM register_dementia) GROUP BY practice",
    "SELECT count(*) AS n FROM patients WHERE person_id IN (SELECT person_id FROM register_copd)",
]
# Heavy enough (a self-join of events) that an executor dies while it runs.
HEAVY = ("SELECT a.source_org, count(*) AS n FROM clinical_events a JOIN clinical_events b "
         "ON a.person_id = b.person_id GROUP BY a.source_org")


def wait_for_port(port, proc, log, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited early:\n{log.read_text()[-3000:]}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"port {port} never opened:\n{log.read_text()[-3000:]}")


def spawn(poplar_bin, args, log, env):
    with open(log, "w") as out:
        return subprocess.Popen([poplar_bin, *args], stdout=out, stderr=subprocess.STDOUT, env=env)


def connect(uri, user, token):
    return flight_sql.connect(uri, db_kwargs={"username": user, "password": token}, autocommit=True)


def cell(value):
    # A cluster adds floating-point values up in another order, which moves the last bits.
    return float(f"{value:.9g}") if isinstance(value, float) else value


def answer(uri, user, token, sql):
    """Sorted rows, or the refusal's rule text."""
    with connect(uri, user, token) as conn, conn.cursor() as cur:
        try:
            cur.execute(sql)
            rows = cur.fetch_arrow_table().to_pylist()
        except Exception as e:  # noqa: BLE001 - the error is the answer being compared
            match = re.search(r"(rule \d[^:]*|steward-only[^:]*|SQL policy[^:]*)", str(e))
            assert match, f"{sql}: not a refusal: {e}"
            return ("refused", match.group(1))
    return sorted((tuple(cell(v) for v in r.values()) for r in rows), key=repr)


@pytest.fixture(scope="module")
def cluster(landed, poplar_bin, tmp_path_factory):
    bucket = os.environ.get("POPLAR_TEST_S3_BUCKET")
    if not bucket or not os.environ.get("AWS_ENDPOINT"):
        pytest.skip("no S3 server (ci/test starts SeaweedFS and sets POPLAR_TEST_S3_BUCKET)")
    local_store, _ = landed
    region = local_store.parent / "region"
    root = tmp_path_factory.mktemp("cluster")
    env = poplar_env()
    store = f"s3://{bucket}/cluster-{uuid.uuid4().hex[:8]}/store"
    subprocess.run(
        [poplar_bin, "load", "--registry", str(region / "sources.toml"), "--input", str(region / "deliveries"),
         "--store", store],
        check=True, env=env, stdout=subprocess.DEVNULL,
    )

    procs = []
    scheduler_port = free_port()
    log = root / "scheduler.log"
    scheduler = spawn(poplar_bin, ["scheduler", "--store", store, "--addr", f"127.0.0.1:{scheduler_port}",
                                   "--executor-timeout-secs", str(EXECUTOR_TIMEOUT_SECS)], log, env)
    procs.append(scheduler)
    wait_for_port(scheduler_port, scheduler, log)
    executors = []
    taken = {scheduler_port}
    for i in range(2):
        flight_port = free_port(taken)
        grpc_port = free_port(taken | {flight_port})
        taken |= {flight_port, grpc_port}
        log = root / f"executor-{i}.log"
        proc = spawn(poplar_bin, ["executor", "--store", store, "--scheduler", f"127.0.0.1:{scheduler_port}",
                                  "--flight-port", str(flight_port), "--grpc-port", str(grpc_port),
                                  "--heartbeat-secs", "1", "--tasks", "2"], log, env)
        procs.append(proc)
        wait_for_port(flight_port, proc, log)
        executors.append(proc)

    users = root / "users.toml"
    tokens = {"sam": add_user(poplar_bin, users, "sam", "steward"),
              "cam": add_user(poplar_bin, users, "cam", "commissioner")}
    on_cluster, _, cluster_addr = start_server(poplar_bin, store, users, "--cluster",
                                               f"df://127.0.0.1:{scheduler_port}", env=env)
    procs.append(on_cluster)
    single_users = root / "single" / "users.toml"
    single_users.parent.mkdir()
    single_users.write_text(users.read_text())
    single, _, single_addr = start_server(poplar_bin, store, single_users, env=env)
    procs.append(single)
    yield {"cluster": f"grpc://{cluster_addr}", "single": f"grpc://{single_addr}", "tokens": tokens,
           "executors": executors, "root": root, "cluster_proc": on_cluster}
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def logs(cluster):
    return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(cluster["root"].glob("*.log")))


def test_a_steward_gets_the_same_answers_cell_for_cell(cluster):
    sam = cluster["tokens"]["sam"]
    for sql in REGISTER_QUESTIONS + UTILITY_QUESTIONS + RED_TEAM:
        expected = answer(cluster["single"], "sam", sam, sql)
        assert expected and expected[0] != "refused", sql
        assert answer(cluster["cluster"], "sam", sam, sql) == expected, f"{sql}\n{logs(cluster)}"


def test_a_commissioner_gets_the_same_releases(cluster):
    cam = cluster["tokens"]["cam"]
    suppressed = refused = 0
    for sql in REGISTER_QUESTIONS + UTILITY_QUESTIONS + RED_TEAM:
        expected = answer(cluster["single"], "cam", cam, sql)
        got = answer(cluster["cluster"], "cam", cam, sql)
        assert got == expected, f"{sql}\n{logs(cluster)}"
        if expected and expected[0] == "refused":
            refused += 1
        else:
            suppressed += sum(v is None for row in expected for v in row)
    assert suppressed > 0 and refused >= 3, (suppressed, refused)


def test_explain_shows_the_release_to_commissioners_and_the_cluster_part_to_stewards(cluster):
    def explain(role, token):
        with connect(cluster["cluster"], role, token) as conn, conn.cursor() as cur:
            cur.execute(f"EXPLAIN {REGISTER_QUESTIONS[0]}")
            return {row["plan_type"]: row["plan"] for row in cur.fetch_arrow_table().to_pylist()}

    # A commissioner sees the release in the logical plan; the physical plan, made from the
    # data (the files read, joins ordered on row counts), is withheld. (That the release
    # runs above the cluster's part is checked in-process: engine/tests/engine/cluster.rs.)
    cam = explain("cam", cluster["tokens"]["cam"])
    assert "Protect: " in cam["logical_plan"], cam
    assert cam["physical_plan"].startswith("withheld under disclosure control"), cam
    assert "Exec" not in "".join(cam.values()), cam
    # A steward's query has no release and runs wholly on the cluster.
    sam = explain("sam", cluster["tokens"]["sam"])
    assert "DistributedQueryExec" in sam["physical_plan"], sam
    assert "ProtectExec" not in sam["physical_plan"], sam


def test_an_executor_killed_mid_query(cluster):
    sam = cluster["tokens"]["sam"]
    expected = answer(cluster["single"], "sam", sam, HEAVY)
    outcome = {}

    def run():
        try:
            outcome["rows"] = answer(cluster["cluster"], "sam", sam, HEAVY)
        except Exception as e:  # noqa: BLE001 - a clean failure is an allowed outcome
            outcome["error"] = str(e)

    query = threading.Thread(target=run)
    query.start()
    time.sleep(0.5)
    victim = cluster["executors"][0]
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    query.join(timeout=120)
    assert not query.is_alive(), "the query neither finished nor failed within 2 minutes"
    if "rows" in outcome:
        assert outcome["rows"] == expected, "a retried query gives the right answer"
    else:
        assert outcome["error"], "a failure says why"
    assert cluster["cluster_proc"].poll() is None, "the front end survives"
    # Once the scheduler has taken the executor as lost, the next query runs on the other.
    time.sleep(EXECUTOR_TIMEOUT_SECS + 2)
    assert answer(cluster["cluster"], "sam", sam, HEAVY) == expected, logs(cluster)
