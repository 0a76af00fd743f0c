"""The measures service (`poplar.measures.v1`) from the outside, the way a population
health team's own tools would call it: Python `grpcio` with stubs generated from Poplar's
.proto by `grpcio-tools`, server reflection, and a raw gRPC-Web call over HTTP/1.1 like
the dashboard's. Every RPC as a commissioner and as a steward; suppression marks, rounding,
and confidence intervals recomputed here, independently, from the released counts."""

import http.client
import importlib
import math
import pathlib
import signal
import struct
import subprocess
import sys

import grpc
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from conftest import start_server
from test_flight_sql import add_user

PROTO_ROOT = pathlib.Path(__file__).resolve().parents[2] / "proto" / "proto"
MEASURES_PROTO = "poplar/measures/v1/measures.proto"
Z95 = 1.959963984540054
Z998 = 3.090232306167813


@pytest.fixture(scope="module")
def pb(tmp_path_factory):
    """(messages, services) modules generated from the .proto now, as a client would."""
    out = tmp_path_factory.mktemp("stubs")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_ROOT}", f"--python_out={out}",
                    f"--grpc_python_out={out}", str(PROTO_ROOT / MEASURES_PROTO)], check=True)
    sys.path.insert(0, str(out))
    return (importlib.import_module("poplar.measures.v1.measures_pb2"),
            importlib.import_module("poplar.measures.v1.measures_pb2_grpc"))


@pytest.fixture(scope="module")
def served(landed, poplar_bin, tmp_path_factory):
    store, _ = landed
    users = tmp_path_factory.mktemp("measures-users") / "users.toml"
    tokens = {"steward": add_user(poplar_bin, users, "sam", "steward"),
              "commissioner": add_user(poplar_bin, users, "cam", "commissioner")}
    proc, _, addr = start_server(poplar_bin, store, users)
    yield addr, tokens
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


@pytest.fixture(scope="module")
def stub(served, pb):
    addr, _ = served
    channel = grpc.insecure_channel(addr)
    yield pb[1].MeasuresServiceStub(channel)
    channel.close()


def auth(token):
    return (("authorization", f"Bearer {token}"),)


def wilson(x, n, z):
    """Wilson score interval for x of n, as a proportion (PHEindicatormethods::phe_proportion)."""
    root = z * math.sqrt(z * z + 4 * x * (1 - x / n))
    return (2 * x + z * z - root) / (2 * (n + z * z)), (2 * x + z * z + root) / (2 * (n + z * z))


def check_value(m, v, multiplier, rounded):
    """A value is either released with counts whose Wilson interval is the one given, or
    marked suppressed with no value; never a 0 standing in for a suppressed cell."""
    if v.suppression == m.SUPPRESSION_NONE:
        assert v.HasField("numerator") and v.HasField("denominator") and v.HasField("value")
        if rounded:
            assert v.numerator % 5 == 0 and v.denominator % 5 == 0, v
        x, n = min(v.numerator, v.denominator), v.denominator
        assert math.isclose(v.value, x / n * multiplier, rel_tol=1e-12, abs_tol=1e-12)
        for interval, z in ((v.ci95, Z95), (v.ci998, Z998)):
            low, high = wilson(x, n, z)
            assert math.isclose(interval.lower, low * multiplier, rel_tol=1e-9, abs_tol=1e-9), (v, low)
            assert math.isclose(interval.upper, high * multiplier, rel_tol=1e-9, abs_tol=1e-9), (v, high)
    elif v.suppression == m.SUPPRESSION_NOT_PUBLISHED:
        # Only where there is no one to take a proportion of (a steward's exact answer).
        assert not rounded and v.denominator == 0 and not v.HasField("value"), v
    else:
        assert v.suppression in (m.SUPPRESSION_PRIMARY, m.SUPPRESSION_SECONDARY), v
        assert not v.HasField("value") and not v.HasField("ci95"), v
        assert v.vs_comparator == m.SIGNIFICANCE_NOT_COMPARED


def test_every_rpc_for_a_commissioner_and_a_steward(stub, served, pb):
    m, _ = pb
    _, tokens = served
    for role, token in tokens.items():
        listed = stub.ListMeasures(m.ListMeasuresRequest(), metadata=auth(token))
        ids = {d.id for d in listed.measures}
        assert {"prevalence_diabetes", "multimorbidity_2plus", "emergency_admissions_dsr"} <= ids
        assert listed.data_as_of
        assert listed.policy.footnote
        assert listed.policy.noise == (role == "commissioner")

        for level in (m.AREA_LEVEL_PRACTICE, m.AREA_LEVEL_PCN, m.AREA_LEVEL_SUB_ICB, m.AREA_LEVEL_ICB,
                      m.AREA_LEVEL_REGION):
            areas = stub.ListAreas(m.ListAreasRequest(level=level), metadata=auth(token)).areas
            assert areas and all(a.level == level for a in areas)
        practices = stub.ListAreas(m.ListAreasRequest(level=m.AREA_LEVEL_PRACTICE), metadata=auth(token)).areas
        assert len(practices) == 20

        for kind in (m.PERIOD_TYPE_MONTH, m.PERIOD_TYPE_QUARTER, m.PERIOD_TYPE_FINANCIAL_YEAR):
            periods = stub.ListPeriods(m.ListPeriodsRequest(type=kind), metadata=auth(token))
            labels = [p.start for p in periods.periods]
            assert labels == sorted(labels) and periods.data_as_of <= periods.periods[-1].end

        values = stub.GetValues(m.GetValuesRequest(
            measure_id="prevalence_hypertension", level=m.AREA_LEVEL_PRACTICE,
            breakdown=[m.DIMENSION_AGE_BAND, m.DIMENSION_SEX]), metadata=auth(token))
        # The complete frame: 20 practices × (20 × 4 + 20 + 4 + 1), every total included.
        assert len(values.values) == 20 * 105
        assert len(values.comparator) == 105
        marks = {}
        for v in list(values.values) + list(values.comparator):
            check_value(m, v, values.measure.multiplier, rounded=(role == "commissioner"))
            marks[v.suppression] = marks.get(v.suppression, 0) + 1
        if role == "commissioner":
            # 1,500 people in 20 practices by 80 age-sex cells: most are small.
            assert marks.get(m.SUPPRESSION_PRIMARY, 0) > 0, marks
            assert marks.get(m.SUPPRESSION_NONE, 0) > 0, marks
        else:
            assert set(marks) <= {m.SUPPRESSION_NONE, m.SUPPRESSION_NOT_PUBLISHED}, "a steward sees every cell"

        funnel = stub.GetFunnel(m.GetFunnelRequest(measure_id="prevalence_hypertension",
                                                   level=m.AREA_LEVEL_PRACTICE), metadata=auth(token))
        assert len(funnel.values) == 20 and funnel.limits
        total = next(c for c in values.comparator if not c.categories)
        if total.HasField("value"):
            assert math.isclose(funnel.target, total.value)

        profile = stub.GetAreaProfile(m.GetAreaProfileRequest(
            area_code=practices[0].code, level=m.AREA_LEVEL_PRACTICE), metadata=auth(token))
        assert len(profile.rows) == len(listed.measures)
        assert all(r.value.area_code == practices[0].code for r in profile.rows)


def test_bad_requests_and_tokens_are_refused_clearly(stub, served, pb):
    m, _ = pb
    _, tokens = served
    with pytest.raises(grpc.RpcError) as refused:
        stub.ListMeasures(m.ListMeasuresRequest(), metadata=auth("ppl_not_a_token"))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as refused:
        stub.GetValues(m.GetValuesRequest(measure_id="<script>", level=m.AREA_LEVEL_PCN),
                       metadata=auth(tokens["commissioner"]))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "<script>" not in refused.value.details()
    with pytest.raises(grpc.RpcError) as refused:
        stub.GetValues(m.GetValuesRequest(measure_id="gp_contacts", level=m.AREA_LEVEL_PCN, parent_code="NOWHERE1"),
                       metadata=auth(tokens["commissioner"]))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_reflection_lists_the_measures_service(served):
    addr, _ = served
    with grpc.insecure_channel(addr) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        assert "poplar.measures.v1.MeasuresService" in set(database.get_services())
        service = database.FindFileContainingSymbol("poplar.measures.v1.MeasuresService")
        assert service.package == "poplar.measures.v1"


def grpc_web(addr, method, message, token):
    """One unary gRPC-Web call over HTTP/1.1, framed by hand as a browser's client does:
    returns (status, data message bytes, trailers)."""
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    body = message.SerializeToString()
    conn.request("POST", f"/poplar.measures.v1.MeasuresService/{method}", body=b"\x00" + struct.pack(">I", len(body)) + body,
                 headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1",
                          "authorization": f"Bearer {token}"})
    response = conn.getresponse()
    payload = response.read()
    data, trailers = b"", {}
    while payload:
        flag, length = payload[0], struct.unpack(">I", payload[1:5])[0]
        frame, payload = payload[5:5 + length], payload[5 + length:]
        if flag & 0x80:
            for line in frame.decode().split("\r\n"):
                if line:
                    key, value = line.split(":", 1)
                    trailers[key.strip().lower()] = value.strip()
        else:
            data = frame
    grpc_status = trailers.get("grpc-status", response.getheader("grpc-status"))
    conn.close()
    return response.status, grpc_status, data


def test_grpc_web_over_http1_like_the_dashboard(served, pb):
    m, _ = pb
    addr, tokens = served
    status, grpc_status, data = grpc_web(addr, "ListMeasures", m.ListMeasuresRequest(), tokens["commissioner"])
    assert (status, grpc_status) == (200, "0")
    listed = m.ListMeasuresResponse.FromString(data)
    assert any(d.id == "prevalence_diabetes" for d in listed.measures)
    status, grpc_status, _ = grpc_web(addr, "ListMeasures", m.ListMeasuresRequest(), "ppl_wrong")
    assert grpc_status == "16", "UNAUTHENTICATED"
    # The descriptors the dashboard builds its client from, with a same-origin-only policy.
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("GET", "/poplar-descriptors.binpb")
    response = conn.getresponse()
    assert response.status == 200 and response.read()
    assert "default-src 'self'" in response.getheader("content-security-policy")
