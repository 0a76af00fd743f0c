"""Approved studies (`poplar.studies.v1`) and the stewards' console (`poplar.governance.v1`)
from the outside: Python `grpcio` with stubs generated from Poplar's .proto files, the
`poplar studies` command line, and ADBC for Flight SQL. A region of its own, in which one
practice stopped delivering six months ago and an acute trust has not delivered yet.

The whole life of a study: a researcher's ad-hoc SQL refused; a study submitted (CLI),
approved by a steward (never its author), run with a parameter inside its bounds, held,
checked and released, fetched as CSV and Arrow. Each refusal names its rule and is in the
audit log. After a later load and an opt-out, a new run honours the opt-out and the first
run reproduced as of its snapshot is byte-identical; a restart keeps every study and run;
feed status flags the late practice.

A deployment that asks for two approvals and two output checkers: a study returned with
comments and resubmitted, approved by two different stewards, its output released only
after two stewards (neither the researcher) release it, each refusal named and audited;
and a steward applying an opt-out list from the console, answered with counts only."""

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

STUDY = (pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "diabetes-by-pcn.study.toml").read_text()


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


def valid_nhs_number(text):
    """NHS England's modulus 11 check (a synthetic region plants some that fail it)."""
    total = sum(int(d) * (10 - i) for i, d in enumerate(text[:9]))
    check = 11 - total % 11
    return check != 10 and (0 if check == 11 else check) == int(text[9])


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
        # (X90002: the console test below opts out some of X90001's patients on this store.)
        patients = next((deliveries / "X90002").iterdir()) / "Patient.ndjson"
        # Every patient of one practice opts out, so the register by PCN surely changes
        # (a handful of people could vanish inside the rounding and leave the output as it was).
        nhs = sorted(set(re.findall(r'"value":\s*"(\d{10})"', patients.read_text())))
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
        assert fresh.output_sha256 != first.output_sha256, "the opt-out is honoured by a new run"
        assert fresh.state == s.OUTPUT_STATE_HELD and not fresh.summary.same_as_released_run
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
        # This server was not given the loaders' key: it cannot apply an opt-out list.
        with pytest.raises(grpc.RpcError) as no_key:
            governance.ApplyOptOut(g.ApplyOptOutRequest(nhs_numbers="9434765919\n"), metadata=auth(sam))
        assert no_key.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "optout-key-file" in no_key.value.details()

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
            cur.execute(f"SELECT checks, checks_required, checked_by FROM study_runs WHERE run_id = '{first_id}'")
            assert cur.fetchall() == [(1, 1, "sam")]
    finally:
        server.stop()


def test_resubmission_two_approvals_two_checkers_and_an_opt_out_from_the_console(region, poplar_bin, pb, tmp_path):
    root, registry, deliveries, region_store = region
    store = tmp_path / "store"  # a copy: this deployment's studies are its own
    shutil.copytree(region_store, store)
    users = tmp_path / "users.toml"
    sam = add_user(poplar_bin, users, "sam", "steward")
    sue = add_user(poplar_bin, users, "sue", "steward")
    rae = add_user(poplar_bin, users, "rae", "researcher")
    key_file = tmp_path / "pseudonym.key"
    key_file.write_text(poplar_env()["POPLAR_PSEUDONYM_KEY"] + "\n")
    proc, _, addr = start_server(poplar_bin, store, users, "--refresh-secs", "1", "--study-approvals", "2",
                                 "--output-checks", "2", "--optout-key-file", str(key_file))
    channel = grpc.insecure_channel(addr)
    s, g = pb["studies"], pb["governance"]
    studies = pb["studies_grpc"].StudiesServiceStub(channel)
    governance = pb["governance_grpc"].GovernanceServiceStub(channel)
    in_a_week = (datetime.now(timezone.utc) + timedelta(days=7)).isoformat()

    def review(token, study_id, decision, **terms):
        return studies.Review(s.ReviewRequest(study_id=study_id, decision=decision, **terms), metadata=auth(token))

    def check(token, run_id, decision):
        return studies.CheckOutput(s.CheckOutputRequest(run_id=run_id, decision=decision, comments="checked"),
                                   metadata=auth(token))

    try:
        param = s.Parameter(name="since", type=s.PARAMETER_TYPE_DATE, min="1990-01-01", max="2030-12-31")
        first_sql = ("SELECT practice, count(*) AS people FROM register_diabetes "
                     "WHERE latest_code_date >= $1 GROUP BY practice")
        submitted = studies.Submit(s.SubmitRequest(
            title="Diabetes register by practice", purpose="Plan reviews", outputs="practice, people",
            sql=first_sql, parameters=[param]), metadata=auth(rae))
        study_id = submitted.study_id
        assert submitted.approvals_required == 2

        # Returned with comments: it cannot run; only its author resubmits, and only then.
        with pytest.raises(grpc.RpcError) as no_comments:
            review(sam, study_id, s.DECISION_RETURN)
        assert no_comments.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        returned = review(sam, study_id, s.DECISION_RETURN, comments="Group by PCN: practices are too small")
        assert returned.state == s.STUDY_STATE_RETURNED
        assert returned.history[-1].action == "return" and "PCN" in returned.history[-1].comments
        refused("study_state", studies.Run, s.RunRequest(study_id=study_id, parameters={"since": "2000-01-01"}),
                metadata=auth(rae))
        revised_sql = STUDY.split('"""')[1]
        revised = s.SubmitRequest(study_id=study_id, title="Diabetes register by PCN", purpose="Plan reviews",
                                  outputs="PCN, people", sql=revised_sql, parameters=[param])
        refused("study_roles", studies.Submit, revised, metadata=auth(sam))
        resubmitted = studies.Submit(revised, metadata=auth(rae))
        assert resubmitted.study_id == study_id and resubmitted.state == s.STUDY_STATE_SUBMITTED
        assert resubmitted.sql_sha256 == hashlib.sha256(revised_sql.encode()).hexdigest() != submitted.sql_sha256
        assert not resubmitted.approvals

        # Two approvals, from two different stewards; the stricter terms bind.
        one = review(sam, study_id, s.DECISION_APPROVE, run_quota=4, expires_at=in_a_week)
        assert one.state == s.STUDY_STATE_SUBMITTED and len(one.approvals) == 1
        refused("independent_review", review, sam, study_id, s.DECISION_APPROVE, run_quota=4, expires_at=in_a_week)
        refused("study_state", studies.Run, s.RunRequest(study_id=study_id, parameters={"since": "2000-01-01"}),
                metadata=auth(rae))
        two = review(sue, study_id, s.DECISION_APPROVE, run_quota=2, expires_at=in_a_week)
        assert two.state == s.STUDY_STATE_APPROVED and two.bound.run_quota == 2
        assert two.bound.sql_sha256 == resubmitted.sql_sha256

        # The output needs two checkers, neither the researcher; one release is not enough.
        run = studies.Run(s.RunRequest(study_id=study_id, parameters={"since": "2000-01-01"}), metadata=auth(rae))
        assert run.state == s.OUTPUT_STATE_HELD and run.checks_required == 2
        refused("study_roles", check, rae, run.run_id, s.OUTPUT_DECISION_RELEASE)
        half = check(sam, run.run_id, s.OUTPUT_DECISION_RELEASE)
        assert half.state == s.OUTPUT_STATE_HELD and [c.by for c in half.checks] == ["sam"]
        refused("held_output", studies.Fetch, s.FetchRequest(run_id=run.run_id, format=s.FORMAT_CSV),
                metadata=auth(rae))
        refused("independent_review", check, sam, run.run_id, s.OUTPUT_DECISION_RELEASE)
        released = check(sue, run.run_id, s.OUTPUT_DECISION_RELEASE)
        assert released.state == s.OUTPUT_STATE_RELEASED and released.checked_by == "sam,sue"
        assert [c.decision for c in released.checks] == [s.OUTPUT_DECISION_RELEASE] * 2
        csv = studies.Fetch(s.FetchRequest(run_id=run.run_id, format=s.FORMAT_CSV), metadata=auth(rae)).data
        assert csv.decode().splitlines()[0] == "pcn,people"

        # A second run: one steward's withhold withholds it, whatever the other decided.
        second = studies.Run(s.RunRequest(study_id=study_id, parameters={"since": "2010-01-01"}), metadata=auth(rae))
        check(sue, second.run_id, s.OUTPUT_DECISION_RELEASE)
        withheld = check(sam, second.run_id, s.OUTPUT_DECISION_WITHHOLD)
        assert withheld.state == s.OUTPUT_STATE_WITHHELD
        refused("held_output", studies.Fetch, s.FetchRequest(run_id=second.run_id, format=s.FORMAT_CSV),
                metadata=auth(rae))

        # Each refusal is audited under its rule, naming the study or run.
        found = governance.SearchAudit(g.SearchAuditRequest(rule="independent_review"), metadata=auth(sam)).entries
        mine = [e for e in found if e.request.startswith(study_id)]  # the copied store's log has others
        assert {e.user for e in mine} == {"sam"} and len(mine) == 2, mine
        assert any(e.request.startswith(f"{study_id} ") for e in mine), "the second approval, under the study"
        assert any(e.request.startswith(f"{run.run_id} ") for e in mine), "the second check, under the run"
        actions = [e.request for e in governance.SearchAudit(
            g.SearchAuditRequest(kind="study", outcome="answered", contains=run.run_id), metadata=auth(sam)).entries]
        assert sum('"action":"release"' in a for a in actions) == 2, actions

        # An opt-out list applied from the console: counts back, never the numbers.
        patients = next((deliveries / "X90001").iterdir()) / "Patient.ndjson"
        found_numbers = re.findall(r'"value":\s*"(\d{10})"', patients.read_text())
        nhs = [n for n in dict.fromkeys(found_numbers) if valid_nhs_number(n)][40:45]
        assert len(nhs) == 5
        before = governance.OptOuts(g.OptOutsRequest(), metadata=auth(sam))
        listed = "nhs_number\n" + "\n".join(nhs) + "\nnot-a-number\n"
        refused("steward_only_data", governance.ApplyOptOut, g.ApplyOptOutRequest(nhs_numbers=listed),
                metadata=auth(rae))
        applied = governance.ApplyOptOut(g.ApplyOptOutRequest(nhs_numbers=listed), metadata=auth(sam))
        assert (applied.newly_opted_out, applied.already_recorded, applied.invalid_entries) == (5, 0, 1)
        assert applied.snapshot > 0 and sum(r.rows for r in applied.rows_removed) > 0
        after = governance.OptOuts(g.OptOutsRequest(), metadata=auth(sam))
        assert after.people == before.people + 5
        assert [a.snapshot for a in after.applications][-1] == applied.snapshot
        again = governance.ApplyOptOut(g.ApplyOptOutRequest(nhs_numbers=listed), metadata=auth(sam))
        assert (again.newly_opted_out, again.already_recorded) == (0, 5)
        for number in nhs:
            assert not governance.SearchAudit(g.SearchAuditRequest(contains=number), metadata=auth(sam)).entries
        assert governance.SearchAudit(g.SearchAuditRequest(contains="Governance/ApplyOptOut"),
                                      metadata=auth(sam)).entries
        assert governance.VerifyAudit(g.VerifyAuditRequest(), metadata=auth(sam)).ok
    finally:
        channel.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    log = (tmp_path / "server.log").read_text()
    assert not any(number in log for number in nhs), "no NHS number in the server's log"
