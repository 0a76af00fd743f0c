"""Approved studies (`poplar.studies.v1`) and the stewards' console (`poplar.governance.v1`)
from the outside: Python `grpcio` with stubs generated from Poplar's .proto files, the
`poplar studies` command line, and ADBC for Flight SQL. A region of its own, in which one
practice stopped delivering six months ago and an acute trust has not delivered yet.

The whole life of a study: a researcher's ad-hoc SQL refused; a study submitted (CLI),
approved by a steward (never its author), run with a parameter inside its bounds, held,
checked and released, fetched as CSV and Arrow. Each refusal names its rule and is in the
audit log. After a later load and an opt-out, a new run honours the opt-out and the first
run reproduced as of its snapshot is byte-identical; a restart keeps every study and run;
feed status flags the late practice."""

import hashlib
import importlib
import io
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import grpc
import pyarrow as pa
import pyarrow.ipc
import pytest

from conftest import poplar_env, start_server
from test_flight_sql import add_user, connect

PROTO_ROOT = pathlib.Path(__file__).resolve().parents[2] / "proto" / "proto"
PROTOS = ["poplar/studies/v1/studies.proto", "poplar/governance/v1/governance.proto"]
LATE = "X90003"

STUDY = '''
title = "Diabetes register by PCN"
purpose = "Plan diabetes reviews across the region's primary care networks"
outputs = "One table: PCN, people on the diabetes register"
sql = """
SELECT o.pcn, count(*) AS people
FROM register_diabetes r JOIN organisations o ON o.ods_code = r.practice
WHERE r.latest_code_date >= $1
GROUP BY o.pcn
"""

[[parameter]]
name = "since"
type = "date"
min = "1990-01-01"
max = "2030-12-31"
'''


@pytest.fixture(scope="module")
def pb(tmp_path_factory):
    out = tmp_path_factory.mktemp("study-stubs")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_ROOT}", f"--python_out={out}",
                    f"--grpc_python_out={out}", *[str(PROTO_ROOT / p) for p in PROTOS]], check=True)
    sys.path.insert(0, str(out))
    return {
        "studies": importlib.import_module("poplar.studies.v1.studies_pb2"),
        "studies_grpc": importlib.import_module("poplar.studies.v1.studies_pb2_grpc"),
        "governance": importlib.import_module("poplar.governance.v1.governance_pb2"),
        "governance_grpc": importlib.import_module("poplar.governance.v1.governance_pb2_grpc"),
    }


@pytest.fixture(scope="module")
def region(poplar_bin, tmp_path_factory):
    """(root, registry, all deliveries, the first load's deliveries, store)."""
    root = tmp_path_factory.mktemp("studies")
    subprocess.run(
        [poplar_bin, "synth", "--patients", "1500", "--out", str(root / "region"), "--gp-practices", "6",
         "--acute-trusts", "1", "--mental-health-trusts", "0", "--community-providers", "0",
         "--social-care", "0", "--pilot-patients", "1500"],
        check=True, env=poplar_env(), stdout=subprocess.DEVNULL)
    deliveries = root / "region" / "deliveries"
    # One practice stopped delivering: its only delivery covers up to six months before the
    # others'. Its events after that are quarantined as future-dated, as a real one's would be.
    late = deliveries / LATE
    (newest,) = list(late.iterdir())
    older = late / "2026-03-31"
    newest.rename(older)
    manifest = (older / "manifest.toml").read_text()
    manifest = re.sub(r'(delivery|extracted|period_end) = "[0-9-]+"', r'\1 = "2026-03-31"', manifest)
    (older / "manifest.toml").write_text(manifest)
    # The acute trust delivers later: the first load is without it.
    first = root / "first"
    shutil.copytree(deliveries, first, ignore=lambda d, names: [n for n in names if n.startswith("T")] if d == str(deliveries) else [])
    store = root / "store"
    load(poplar_bin, root / "region" / "sources.toml", first, store)
    return root, root / "region" / "sources.toml", deliveries, store


def load(poplar_bin, registry, deliveries, store):
    subprocess.run([poplar_bin, "load", "--registry", str(registry), "--input", str(deliveries), "--store", str(store)],
                   check=True, env=poplar_env(), stdout=subprocess.DEVNULL)


def auth(token):
    return (("authorization", f"Bearer {token}"),)


def rule_of(error):
    return dict(error.trailing_metadata() or ()).get("poplar-rule")


def refused(rule, call, *args, **kwargs):
    with pytest.raises(grpc.RpcError) as error:
        call(*args, **kwargs)
    assert rule_of(error.value) == rule, error.value
    return error.value


def cli(poplar_bin, addr, token, *args, ok=True):
    out = subprocess.run([poplar_bin, "studies", *args, "--addr", f"grpc://{addr}"],
                         capture_output=True, env={**poplar_env(), "POPLAR_TOKEN": token})
    assert (out.returncode == 0) == ok, out.stderr.decode()
    return out


class Server:
    def __init__(self, poplar_bin, store, users):
        self.args = (poplar_bin, store, users)
        self.start()

    def start(self):
        self.proc, _, self.addr = start_server(*self.args, "--refresh-secs", "1")
        self.channel = grpc.insecure_channel(self.addr)

    def stop(self):
        self.channel.close()
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=60) == 0


def test_a_study_from_submission_to_a_reproducible_released_output(region, poplar_bin, pb, tmp_path):
    root, registry, deliveries, store = region
    users = tmp_path / "users.toml"
    sam = add_user(poplar_bin, users, "sam", "steward")
    rae = add_user(poplar_bin, users, "rae", "researcher")
    server = Server(poplar_bin, store, users)
    s, g = pb["studies"], pb["governance"]
    studies = pb["studies_grpc"].StudiesServiceStub(server.channel)
    governance = pb["governance_grpc"].GovernanceServiceStub(server.channel)
    try:
        # A researcher's ad-hoc SQL is refused, the rule named.
        with connect(f"grpc://{server.addr}", "rae", rae) as conn:
            with pytest.raises(Exception) as error:
                conn.cursor().execute("SELECT count(*) FROM patients")
            assert "approved studies" in str(error.value)

        # Submitted from the command line; its id is stdout's first line.
        study_file = tmp_path / "study.toml"
        study_file.write_text(STUDY)
        study_id = cli(poplar_bin, server.addr, rae, "submit", str(study_file)).stdout.decode().splitlines()[0]
        early = cli(poplar_bin, server.addr, rae, "run", study_id, "--param", "since=2000-01-01", ok=False)
        assert b"[rule: study_state]" in early.stderr
        in_a_day = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
        refused("independent_review", studies.Review, s.ReviewRequest(
            study_id=study_id, decision=s.DECISION_APPROVE, run_quota=3, expires_at=in_a_day), metadata=auth(rae))
        queue = cli(poplar_bin, server.addr, sam, "review").stdout.decode()
        assert study_id in queue and "$1 since (date)" in queue
        cli(poplar_bin, server.addr, sam, "approve", study_id, "--quota", "3", "--days", "1")

        refused("study_parameters", studies.Run, s.RunRequest(
            study_id=study_id, parameters={"since": "1980-01-01"}), metadata=auth(rae))
        out = cli(poplar_bin, server.addr, rae, "run", study_id, "--param", "since=2000-01-01").stdout.decode()
        first_id = out.splitlines()[0]
        study = studies.Get(s.GetRequest(study_id=study_id), metadata=auth(sam))
        (first,) = study.runs
        assert first.state == s.OUTPUT_STATE_HELD and first.summary.rows > 0 and first.summary.counts_rounded
        assert "_registers" in first.pin.table_versions
        held = cli(poplar_bin, server.addr, rae, "fetch", first_id, ok=False)
        assert b"[rule: held_output]" in held.stderr
        cli(poplar_bin, server.addr, sam, "release", first_id, "--comments", "totals by PCN, all rounded")

        csv = cli(poplar_bin, server.addr, rae, "fetch", first_id).stdout.decode()
        assert csv.splitlines()[0] == "pcn,people"
        arrow = studies.Fetch(s.FetchRequest(run_id=first_id, format=s.FORMAT_ARROW), metadata=auth(rae))
        assert hashlib.sha256(arrow.data).hexdigest() == arrow.output_sha256 == first.output_sha256
        table = pa.ipc.open_stream(io.BytesIO(arrow.data)).read_all()
        assert table.column_names == ["pcn", "people"]
        assert all(v is None or v % 5 == 0 for v in table.column("people").to_pylist())

        # Later: the acute trust's first delivery lands, and some people opt out.
        snapshot_before = first.pin.snapshot
        load(poplar_bin, registry, deliveries, store)
        patients = next((deliveries / "X90001").iterdir()) / "Patient.ndjson"
        nhs = re.findall(r'"value":\s*"(\d{10})"', patients.read_text())[:30]
        (tmp_path / "optout.txt").write_text("\n".join(nhs) + "\n")
        subprocess.run([poplar_bin, "optout", "apply", "--list", str(tmp_path / "optout.txt"), "--store", str(store)],
                       check=True, env=poplar_env(), stdout=subprocess.DEVNULL)
        applied = governance.OptOuts(g.OptOutsRequest(), metadata=auth(sam))
        assert applied.people > 0 and len(applied.applications) == 1

        # A restart keeps every study and run.
        server.stop()
        server.start()
        studies = pb["studies_grpc"].StudiesServiceStub(server.channel)
        governance = pb["governance_grpc"].GovernanceServiceStub(server.channel)
        kept = studies.Get(s.GetRequest(study_id=study_id), metadata=auth(sam))
        assert [r.run_id for r in kept.runs] == [first_id] and kept.runs[0].state == s.OUTPUT_STATE_RELEASED
        assert list(kept.runs[0].pin.later_optouts) == [applied.applications[0].snapshot], "predates the opt-out"

        fresh = studies.Run(s.RunRequest(study_id=study_id, parameters={"since": "2000-01-01"}), metadata=auth(rae))
        assert fresh.pin.snapshot > snapshot_before and not fresh.pin.later_optouts
        again = studies.Run(s.RunRequest(study_id=study_id, parameters={"since": "2000-01-01"}, as_of_run=first_id),
                            metadata=auth(rae))
        assert again.pin.snapshot == snapshot_before
        assert again.output_sha256 == first.output_sha256, "byte-identical as of its snapshot"
        assert again.state == s.OUTPUT_STATE_RELEASED and again.summary.same_as_released_run == first_id
        reproduced = cli(poplar_bin, server.addr, rae, "fetch", again.run_id, "--format", "arrow").stdout
        assert reproduced == arrow.data
        refused("run_quota", studies.Run, s.RunRequest(study_id=study_id, parameters={"since": "2000-01-01"}),
                metadata=auth(rae))

        # An approval that expires.
        short_id = cli(poplar_bin, server.addr, rae, "submit", str(study_file)).stdout.decode().splitlines()[0]
        soon = (datetime.now(timezone.utc) + timedelta(seconds=2)).isoformat()
        cli(poplar_bin, server.addr, sam, "approve", short_id, "--expires", soon)
        time.sleep(3)
        expired = cli(poplar_bin, server.addr, rae, "run", short_id, "--param", "since=2000-01-01", ok=False)
        assert b"[rule: approval_expired]" in expired.stderr

        # The stewards' console: the late practice flagged, the console refused to others.
        feeds = governance.FeedStatus(g.FeedStatusRequest(), metadata=auth(sam))
        by_source = {f.source_org: f for f in feeds.feeds}
        assert by_source[LATE].late and by_source[LATE].days_behind >= 180
        assert by_source[LATE].period_end == "2026-03-31"
        assert sum(q.rows for q in by_source[LATE].quarantined) > 0
        on_time = [f for code, f in by_source.items() if code != LATE]
        assert on_time and not any(f.late for f in on_time), on_time
        assert all(f.rows_landed > 0 for f in feeds.feeds)
        refused("steward_only_data", governance.FeedStatus, g.FeedStatusRequest(), metadata=auth(rae))
        names = {u.name: u.role for u in governance.ListUsers(g.ListUsersRequest(), metadata=auth(sam)).users}
        assert names == {"sam": "steward", "rae": "researcher"}

        # Every refusal above is audited under its rule; the chain verifies.
        for rule in ["approved_studies_only", "study_state", "independent_review", "study_parameters",
                     "held_output", "run_quota", "approval_expired", "steward_only_data"]:
            found = governance.SearchAudit(g.SearchAuditRequest(rule=rule), metadata=auth(sam)).entries
            assert found and all(e.outcome == "refused" for e in found), rule
        verified = governance.VerifyAudit(g.VerifyAuditRequest(), metadata=auth(sam))
        assert verified.ok and verified.entries_checked > 20, verified.problems
        with connect(f"grpc://{server.addr}", "sam", sam) as conn:
            cur = conn.cursor()
            cur.execute("SELECT study_id, state, runs_used FROM studies ORDER BY submitted_at")
            assert cur.fetchall() == [(study_id, "approved", 3), (short_id, "expired", 0)]
            cur.execute("SELECT count(*) FROM study_runs WHERE state = 'released'")
            assert cur.fetchall() == [(2,)]
    finally:
        server.stop()
