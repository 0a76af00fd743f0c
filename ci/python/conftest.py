"""Shared fixture: a small synthetic region, generated and loaded by the `poplar` binary."""

import json
import os
import pathlib
import re
import subprocess

import pytest

KEY = "python-test-key-0123456789abcdef01234567"
NOISE_KEY = "python-noise-key-0123456789abcdef0123456"


def poplar_env():
    env = dict(os.environ)
    env["POPLAR_PSEUDONYM_KEY"] = KEY
    env["POPLAR_NOISE_KEY"] = NOISE_KEY
    env["POPLAR_LOG"] = "warn,buoyant_kernel=off"
    return env


@pytest.fixture(scope="session")
def poplar_bin():
    path = os.environ.get("POPLAR_BIN")
    assert path and pathlib.Path(path).exists(), "POPLAR_BIN must point at a built poplar binary (ci/test sets it)"
    return path


def synth(poplar_bin, region, patients, gp_practices, acute_trusts, mental_health_trusts, community_providers,
          social_care):
    """`poplar synth` of a region of `patients` people and the organisations given."""
    subprocess.run(
        [poplar_bin, "synth", "--patients", str(patients), "--out", str(region),
         "--gp-practices", str(gp_practices), "--acute-trusts", str(acute_trusts),
         "--mental-health-trusts", str(mental_health_trusts), "--community-providers", str(community_providers),
         "--social-care", str(social_care), "--pilot-patients", "2000"],
        check=True, env=poplar_env(), stdout=subprocess.DEVNULL,
    )


@pytest.fixture(scope="session")
def landed(tmp_path_factory, poplar_bin):
    """(store path, load report) for a 1,500-person region of 30 organisations."""
    root = tmp_path_factory.mktemp("poplar")
    region = root / "region"
    synth(poplar_bin, region, 1500, gp_practices=20, acute_trusts=2, mental_health_trusts=1, community_providers=2,
          social_care=5)
    store = root / "store"
    report = root / "report.json"
    subprocess.run(
        [poplar_bin, "load", "--registry", str(region / "sources.toml"), "--input", str(region / "deliveries"),
         "--store", str(store), "--report", str(report)],
        check=True, env=poplar_env(), stdout=subprocess.DEVNULL,
    )
    return store, json.loads(report.read_text())


def start_server(poplar_bin, store, users, *flags, env=None):
    """`poplar serve` on a free local port, with `flags` added (and `env` instead of
    `poplar_env()` if given). Its log goes to `server.log` beside the users file: a pipe
    nobody reads fills and stalls the server. Returns (process, scheme, host:port)."""
    log = pathlib.Path(users).parent / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [poplar_bin, "serve", "--store", str(store), "--users", str(users), "--addr", "127.0.0.1:0", *flags],
            stdout=subprocess.PIPE, stderr=out, text=True, env=env or poplar_env())
    line = proc.stdout.readline()
    match = re.search(r"(grpc(?:\+tls)?)://(\S+)", line)
    assert match, f"server did not start: {line} {log.read_text()}"
    return proc, match.group(1), match.group(2)
