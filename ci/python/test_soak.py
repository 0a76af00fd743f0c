"""Soak: 8 concurrent ADBC clients of mixed roles (commissioners, analysts, stewards)
asking realistic questions of a live `poplar serve` over a store on a real SeaweedFS S3
server, while a second delivery set is loaded into the same store. SeaweedFS is killed
(SIGKILL) and restarted twice: once mid-load, once mid-query.

Asserted: no client error outside the restart windows (errors inside them are counted,
reported, and must be clean refusals: no request may outlast the client's timeout); each
client answers again after the last restart; the load completes, or its re-run after the
restart does, with every table's row count equal to a clean load of both sets into a local
directory (nothing lost, nothing doubled); the server is alive at the end; `poplar audit
verify` passes and the audit log holds exactly one completed entry (with its provisional
`started` one) per answered request, no entry for a request nobody made, and never two
for one.

Runs for POPLAR_SOAK_SECONDS (default 90, so `ci/test` stays short); longer runs work the
same way, e.g. `POPLAR_SOAK_SECONDS=1800 POPLAR_BIN=... python -m pytest -q -s
ci/python/test_soak.py`. Researchers and commissioners pace themselves so that a long run
stays inside their daily answer budgets. SeaweedFS is this test's own instance (the `weed`
binary from the virtualenv), on free ports, with one data directory across restarts.
"""

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import adbc_driver_flightsql.dbapi as flight_sql
import pytest
from deltalake import DeltaTable

from conftest import poplar_env, start_server, synth
from ports import free_port
from test_flight_sql import add_user

SOAK_SECONDS = float(os.environ.get("POPLAR_SOAK_SECONDS", "90"))
# No request may take longer than this: the client gives up (a hang, and a failure).
CLIENT_TIMEOUT_SECS = 120
# The server stops a query after this long (a clean refusal, inside the client's bound).
QUERY_TIMEOUT_SECS = 60
# How long SeaweedFS stays down each time.
DOWN_SECS = 5
# After SeaweedFS answers again, the restart window stays open this long: object_store's
# retry backoff (up to 15 s between attempts) and the server's catalog refresh.
GRACE_SECS = 15
# Every client must answer cleanly for at least this long after the last window.
AFTER_SECS = 15
# The mid-load kill comes this long after the load starts.
LOAD_KILL_AFTER_SECS = 2
BUCKET = "poplar-soak"
TABLES = ["patients", "clinical_events", "medications", "encounters", "quarantine"]
# Daily answer budgets (docs/disclosure-control.md): clients pace themselves within them.
BUDGET = {"commissioner": 2000}

QUERIES = {
    "commissioner": [
        "SELECT sex, count(*) AS n FROM patients GROUP BY sex",
        "SELECT o.pcn, count(*) AS people FROM register_membership m "
        "JOIN organisations o ON o.ods_code = m.practice GROUP BY o.pcn",
        "SELECT count(*) AS n FROM register_diabetes",
        "SELECT imd_decile, count(*) AS n FROM patients GROUP BY imd_decile",
    ],
    # Researchers may run only approved studies (refused ad-hoc SQL), so the third
    # non-steward client kind is the analyst.
    "analyst": [
        "SELECT register, count(*) AS n FROM register_membership GROUP BY register",
        "SELECT date_part('year', event_date) AS y, count(*) AS n FROM clinical_events GROUP BY 1",
        "SELECT sex, count(*) AS n FROM register_asthma r JOIN patients p ON p.person_id = r.person_id GROUP BY sex",
    ],
    "steward": [
        "SELECT count(*) AS n FROM clinical_events",
        "SELECT source_org, count(*) AS n FROM patients GROUP BY source_org",
        "SELECT count(*) AS n FROM medications WHERE issue_date >= DATE '2020-01-01'",
        "SELECT org_type, count(*) AS n FROM organisations GROUP BY org_type",
    ],
}
CLIENTS = [
    ("cam1", "commissioner"), ("cam2", "commissioner"), ("cam3", "commissioner"),
    ("ana1", "analyst"), ("ana2", "analyst"), ("ana3", "analyst"),
    ("sam1", "steward"), ("sam2", "steward"),
]
TAG = re.compile(r"-- (soak \w+ r\d+)$")


class SeaweedFS:
    """`weed server` (master, volume, filer, S3) on 127.0.0.1, as ci/lib.sh starts it, that
    this test kills and restarts on the same ports and data directory."""

    def __init__(self, weed, root):
        self.weed, self.dir = weed, root
        (root / "data").mkdir(exist_ok=True)
        self.ports = {}
        for name in ("master", "volume", "filer", "s3"):
            self.ports[name] = free_port(set(self.ports.values()))
        self.endpoint = f"http://127.0.0.1:{self.ports['s3']}"
        self.proc, self.starts = None, 0

    def env(self):
        env = poplar_env()
        env.update(AWS_ENDPOINT=self.endpoint, AWS_ALLOW_HTTP="true", AWS_REGION="us-east-1",
                   AWS_ACCESS_KEY_ID="poplar-test", AWS_SECRET_ACCESS_KEY="poplar-test")
        return env

    def storage_options(self):
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": "poplar-test", "AWS_SECRET_ACCESS_KEY": "poplar-test"}

    @staticmethod
    def server_env():
        """The environment without AWS_*: `weed` turns AWS_ACCESS_KEY_ID into an identity and
        then refuses anonymous requests, and ci/test exports it for its own S3 server."""
        return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}

    def start(self, timeout=120):
        self.starts += 1
        with open(self.dir / f"weed-{self.starts}.log", "w") as log:
            p = self.ports
            self.proc = subprocess.Popen(
                [self.weed, "server", f"-dir={self.dir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                 f"-master.port={p['master']}", f"-volume.port={p['volume']}", f"-filer.port={p['filer']}",
                 "-s3", f"-s3.port={p['s3']}", "-s3.port.iceberg=0", "-s3.port.lance=0",
                 "-master.volumeSizeLimitMB=64"],
                stdout=log, stderr=subprocess.STDOUT, env=self.server_env())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self.healthy():
                return
            time.sleep(0.5)
        tail = (self.dir / f"weed-{self.starts}.log").read_text()[-2000:]
        raise AssertionError(f"SeaweedFS did not start; its log ends:\n{tail}")

    def _call(self, method, path, body=None):
        req = urllib.request.Request(self.endpoint + path, data=body, method=method)
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.read()

    def healthy(self):
        """The bucket exists and an object can be written and read back."""
        try:
            try:
                self._call("PUT", f"/{BUCKET}")
            except urllib.error.HTTPError as e:
                if e.code != 409:  # already there
                    return False
            self._call("PUT", f"/{BUCKET}/health/probe", b"ok")
            return self._call("GET", f"/{BUCKET}/health/probe") == b"ok"
        except (OSError, urllib.error.URLError):
            return False

    def kill(self):
        """SIGKILL: a crash, not a shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def stop(self):
        """Shut down for good, and remove the Unix sockets its instances left in /tmp."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        for port in self.ports.values():
            for name in (f"seaweedfs-*-{port}.sock", f"seaweedfs-*-grpc-{port + 10000}.sock"):
                for sock in pathlib.Path("/tmp").glob(name):
                    sock.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory):
    weed = pathlib.Path(sys.executable).parent / "weed"
    if not weed.exists():
        weed = shutil.which("weed")
    if not weed:
        assert not os.environ.get("CI"), "CI must run the soak: ci/lib.sh installs SeaweedFS into the virtualenv"
        pytest.skip("no weed binary (ci/test installs SeaweedFS into the virtualenv)")
    s3 = SeaweedFS(str(weed), tmp_path_factory.mktemp("seaweedfs"))
    try:
        s3.start()
        yield s3
    finally:
        s3.stop()


@pytest.fixture(scope="module")
def delivery_sets(poplar_bin, tmp_path_factory):
    """A synthetic region whose organisations' deliveries are split in two sets: (registry,
    first set, second set)."""
    root = tmp_path_factory.mktemp("soak")
    region = root / "region"
    synth(poplar_bin, region, 2000, gp_practices=16, acute_trusts=2, mental_health_trusts=1, community_providers=1,
          social_care=2)
    sets = (root / "first", root / "second")
    for i, source in enumerate(sorted(p for p in (region / "deliveries").iterdir() if p.is_dir())):
        shutil.copytree(source, sets[i % 2] / source.name)
    return region / "sources.toml", *sets


def load(poplar_bin, registry, deliveries, store, env, log):
    """`poplar load` of `deliveries` into `store`, started (not awaited)."""
    with open(log, "a") as out:
        return subprocess.Popen(
            [poplar_bin, "load", "--registry", str(registry), "--input", str(deliveries), "--store", str(store),
             "--group-rows", "20000"],
            env=env, stdout=subprocess.DEVNULL, stderr=out)


def snapshot_counts(store, storage_options=None):
    """Rows of each table at the newest snapshot's versions: what readers see."""
    snaps = DeltaTable(f"{store}/snapshots", storage_options=storage_options).to_pyarrow_table().to_pylist()
    versions = json.loads(max(snaps, key=lambda r: r["snapshot"])["table_versions"])
    return {t: DeltaTable(f"{store}/{t}", version=versions[t], storage_options=storage_options)
            .to_pyarrow_dataset().count_rows() for t in TABLES}


def connect(uri, user, token):
    timeouts = {f"adbc.flight.sql.rpc.timeout_seconds.{k}": str(CLIENT_TIMEOUT_SECS)
                for k in ("fetch", "query", "update")}
    return flight_sql.connect(uri, db_kwargs={"username": user, "password": token, **timeouts}, autocommit=True)


@dataclass
class Request:
    tag: str
    start: float
    end: float
    error: str | None


class Client(threading.Thread):
    """One user asking their role's questions in turn until told to stop, each tagged with a
    comment naming the request so the audit log can be matched to it."""

    def __init__(self, uri, user, role, token, pace):
        super().__init__(daemon=True)
        self.uri, self.user, self.role, self.token, self.pace = uri, user, role, token, pace
        self.requests, self.inflight_since = [], None
        self.stop, self.connect_error = threading.Event(), None

    def run(self):
        try:
            conn = connect(self.uri, self.user, self.token)
        except Exception as e:  # reported by the test
            self.connect_error = str(e)
            return
        with conn:
            i = 0
            while not self.stop.is_set():
                tag = f"soak {self.user} r{i}"
                sql = f"{QUERIES[self.role][i % len(QUERIES[self.role])]} -- {tag}"
                start = self.inflight_since = time.monotonic()
                error = None
                try:
                    with conn.cursor() as cur:
                        cur.execute(sql)
                        cur.fetchall()
                except Exception as e:  # classified by the test
                    error = f"{type(e).__name__}: {e}"
                self.inflight_since = None
                self.requests.append(Request(tag, start, time.monotonic(), error))
                i += 1
                self.stop.wait(self.pace)


def overlaps(request, windows):
    return any(request.start <= end and request.end >= start for start, end in windows)


def steward_rows(uri, user, token, sql):
    with connect(uri, user, token) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table().to_pylist()


def test_soak_with_seaweedfs_restarts_mid_load_and_mid_query(seaweed, delivery_sets, poplar_bin, tmp_path):
    registry, first, second = delivery_sets
    env = seaweed.env()
    store = f"s3://{BUCKET}/store"
    log = tmp_path / "load.log"

    # The reference: both sets loaded cleanly into a local directory.
    reference = tmp_path / "reference"
    for deliveries in (first, second):
        assert load(poplar_bin, registry, deliveries, reference, poplar_env(), log).wait(timeout=900) == 0
    expected = snapshot_counts(reference)

    assert load(poplar_bin, registry, first, store, env, log).wait(timeout=900) == 0, log.read_text()[-2000:]

    users = tmp_path / "users.toml"
    tokens = {user: add_user(poplar_bin, users, user, role) for user, role in CLIENTS}
    tokens["auditor"] = add_user(poplar_bin, users, "auditor", "steward")
    proc, _, addr = start_server(poplar_bin, store, users, "--query-timeout-secs", str(QUERY_TIMEOUT_SECS), env=env)
    uri = f"grpc://{addr}"

    clients = []
    load_proc = None
    windows, loads, inflight_at_kill, load_running_at_kill = [], [], [], None

    def restart():
        """Kill SeaweedFS, keep it down, start it again; the window runs from the kill
        until GRACE_SECS after it answers again."""
        inflight_at_kill.append(sum(1 for c in clients if c.inflight_since is not None))
        began = time.monotonic()
        seaweed.kill()
        time.sleep(DOWN_SECS)
        seaweed.start()
        windows.append((began, time.monotonic() + GRACE_SECS))
        print(f"SeaweedFS down and back in {time.monotonic() - began:.1f} s")

    try:
        for user, role in CLIENTS:
            pace = max(0.2, SOAK_SECONDS / (0.8 * BUDGET[role])) if role in BUDGET else 0.2
            clients.append(Client(uri, user, role, tokens[user], pace))
        started = time.monotonic()
        for c in clients:
            c.start()

        # Mid-load: the second set, with SeaweedFS killed shortly after the load starts.
        time.sleep(max(5.0, 0.1 * SOAK_SECONDS))
        load_started = time.monotonic()
        load_proc = load(poplar_bin, registry, second, store, env, log)
        time.sleep(LOAD_KILL_AFTER_SECS)
        load_running_at_kill = load_proc.poll() is None
        restart()
        loads.append(load_proc.wait(timeout=900))
        if loads[-1] != 0:
            load_proc = load(poplar_bin, registry, second, store, env, log)
            loads.append(load_proc.wait(timeout=900))
        load_secs = time.monotonic() - load_started

        # Mid-query (after some clean time): wait for a moment when a client is waiting for
        # an answer.
        time.sleep(max(0.0, max(started + 0.55 * SOAK_SECONDS, windows[-1][1] + 10) - time.monotonic()))
        deadline = time.monotonic() + 10
        while not any(c.inflight_since for c in clients) and time.monotonic() < deadline:
            time.sleep(0.01)
        restart()

        time.sleep(max(0.0, max(started + SOAK_SECONDS, windows[-1][1] + AFTER_SECS) - time.monotonic()))
        for c in clients:
            c.stop.set()
        for c in clients:
            c.join(timeout=CLIENT_TIMEOUT_SECS + 30)
        hung_threads = [c.user for c in clients if c.is_alive()]
        soak_secs = time.monotonic() - started

        requests = [(c, r) for c in clients for r in c.requests]
        inside = [(c, r) for c, r in requests if overlaps(r, windows)]
        outside = [(c, r) for c, r in requests if not overlaps(r, windows)]
        errors_outside = [(c.user, r.error[:200]) for c, r in outside if r.error]
        errors_inside = [r.error for _, r in inside if r.error]
        slowest = max(r.end - r.start for _, r in requests)
        print(f"soak {soak_secs:.0f} s: {len(requests)} requests by {len(clients)} clients, "
              f"{len(inside)} inside the restart windows ({len(errors_inside)} errors there), "
              f"{len(errors_outside)} errors outside; slowest {slowest:.1f} s; "
              f"in flight at the kills {inflight_at_kill}; load exits {loads} ({load_secs:.0f} s), "
              f"running at the kill: {load_running_at_kill}")
        for message in sorted({e[:160] for e in errors_inside}):
            print("  inside a window:", message)

        assert not [c.connect_error for c in clients if c.connect_error], "every client signs in"
        assert not hung_threads, f"clients still waiting for an answer: {hung_threads}"
        assert slowest < CLIENT_TIMEOUT_SECS - 1, f"a request took {slowest:.0f} s: a hang, not a refusal"
        assert not [e for e in errors_inside if "deadline" in e.lower() or "timed out" in e.lower()], \
            "errors in the windows are refusals, not timeouts"
        assert not errors_outside, errors_outside[:5]
        assert load_running_at_kill, "the first kill came mid-load"
        assert inflight_at_kill[1] > 0, "the second kill came mid-query"
        for c in clients:
            after = [r for r in c.requests if r.start > windows[-1][1] and not r.error]
            assert after, f"{c.user} answers again after the restarts"
        assert loads[-1] == 0, log.read_text()[-2000:]
        assert len(loads) <= 2, "the load completes, or its re-run does"

        # Nothing lost or doubled: the store holds what a clean load of both sets holds.
        assert snapshot_counts(store, seaweed.storage_options()) == expected
        assert proc.poll() is None, "the server is alive"
        # The server moves to the new snapshot and answers from it.
        deadline = time.monotonic() + 60
        while True:
            seen = steward_rows(uri, "auditor", tokens["auditor"], "SELECT count(*) AS n FROM clinical_events")
            if seen[0]["n"] == expected["clinical_events"] or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert seen[0]["n"] == expected["clinical_events"]

        # The audit log: one completed entry (and its provisional one) per answered request.
        entries = steward_rows(uri, "auditor", tokens["auditor"],
                               'SELECT seq, "user", kind, request, outcome, completes FROM audit_log')
        by_tag = {}
        for e in entries:
            match = TAG.search(e["request"]) if e["kind"] == "sql" else None
            if match:
                by_tag.setdefault(match.group(1), []).append(e)
        made = {r.tag: (c, r) for c, r in requests}
        assert set(by_tag) <= set(made), f"entries for requests nobody made: {sorted(set(by_tag) - set(made))[:5]}"
        unaudited = []
        for tag, (c, r) in made.items():
            found = by_tag.get(tag, [])
            assert all(e["user"] == c.user for e in found), tag
            starts = [e for e in found if e["outcome"] == "started"]
            ends = [e for e in found if e["outcome"] != "started"]
            assert len(starts) <= 1 and len(ends) <= 1, f"{tag} is in the log twice: {found}"
            if starts and ends:
                assert ends[0]["completes"] == starts[0]["seq"], found
            if r.error is None:
                assert len(starts) == 1 and len(ends) == 1 and ends[0]["outcome"] == "answered", \
                    f"answered request {tag} has entries {found}"
            elif not ends:
                unaudited.append(tag)
        for c in clients:
            sign_ins = [e for e in entries if e["user"] == c.user and e["kind"] == "sign_in"]
            assert [e["outcome"] for e in sign_ins] == ["answered"], (c.user, sign_ins)
        print(f"audit: {len(entries)} entries; {len(unaudited)} requests inside the windows have no "
              "completed entry (the log could not be written, so no answer was given)")
        assert all(overlaps(made[t][1], windows) for t in unaudited)

        out = subprocess.run([poplar_bin, "audit", "verify", "--store", store],
                             capture_output=True, text=True, env=env, timeout=600)
        assert out.returncode == 0, out.stdout + out.stderr
        assert proc.poll() is None, "the server is alive at the end"
    finally:
        for c in clients:
            c.stop.set()
        if load_proc is not None and load_proc.poll() is None:
            load_proc.kill()
            load_proc.wait(timeout=30)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
