#!/usr/bin/env python3
"""The side-by-side suite (`ci/bench compare`): the same SQL text answered by Poplar over
Arrow Flight SQL (ADBC, as a steward and as a commissioner) and by DuckDB over the very
Parquet files Poplar landed (the snapshot's file list, read from the Delta log), in one
run, interleaved: for each question a warm-up of each engine, then `--iterations` rounds
in which each engine answers once, the order rotating each round. DuckDB runs in its own
process so that its peak RSS is its own; Poplar is a `poplar serve` process.

The steward's answer (no disclosure control) must equal DuckDB's, or the figures would
compare different work: a mismatch is recorded and fails the run. The commissioner's
answer is protected (noise, rounding, suppression), so only its time is compared.

`--baseline BINARY` (with `--baseline-env`, and `--poplar-env` for the main server) adds a
second `poplar serve` answering as a steward and as a commissioner, interleaved with the
rest: a change's effect (a build, an engine setting) measured within one run on this noisy
machine. Both servers answer the same questions as the same roles, so each has the same
workload (a server that also answers commissioners holds more memory).

Output: one JSON line per question and one for the run (start-up, peak RSS, settings)
appended to `--output`; a Markdown table on stdout."""

import argparse
import datetime
import decimal
import json
import multiprocessing as mp
import os
import pathlib
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

from deltalake import DeltaTable

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from questions import questions  # noqa: E402

PERSONAL = ["patients", "clinical_events", "medications", "encounters"]
TABLES = PERSONAL + ["organisations"]
ENGINES = ["duckdb", "steward", "commissioner"]
# Where and how `poplar serve` logs a query that spilled to disk (engine/src/gate/answer.rs).
SPILL_TARGET = "poplar_engine::gate::answer"
SPILL_MESSAGE = "the query spilled to disk to stay inside its memory limit"


def peak_rss_mib(pid="self"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def snapshot_files(store):
    """Each table's Parquet files at the newest snapshot's versions (the cut Poplar reads)."""
    snaps = DeltaTable(str(store / "snapshots")).to_pyarrow_table().to_pylist()
    versions = json.loads(max(snaps, key=lambda r: r["snapshot"])["table_versions"])
    files = {}
    for table in TABLES:
        # Poplar writes no deletion vectors or column mapping, so the files are the table.
        files[table] = DeltaTable(str(store / table), version=versions[table]).file_uris()
    return files


def normalised(table):
    """Rows as comparable tuples: dates as ISO days, numbers to 6 significant digits,
    sorted (neither engine is asked for an order)."""

    def value(v):
        if v is None:
            return None
        if isinstance(v, (datetime.datetime, datetime.date)):
            return v.isoformat()[:10]
        if isinstance(v, (int, float, decimal.Decimal)) and not isinstance(v, bool):
            return f"{float(v):.6g}"
        return str(v)

    rows = [tuple(value(v) for v in row.values()) for row in table.to_pylist()]
    return sorted(rows, key=repr)


def duckdb_worker(pipe, files):
    """DuckDB over the landed files, in this process, answering SQL sent down `pipe`."""
    import duckdb

    con = duckdb.connect()
    for table, paths in files.items():
        listed = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
        hive = ", hive_partitioning = true, hive_types = {'source_org': VARCHAR}" if table in PERSONAL else ""
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet([{listed}]{hive})")
    pipe.send(("ready", duckdb.__version__, con.execute("SELECT current_setting('threads')").fetchone()[0]))
    while True:
        message = pipe.recv()
        if message is None:
            pipe.send(peak_rss_mib())
            return
        sql, want_rows = message
        try:
            started = time.perf_counter()
            table = con.execute(sql).to_arrow_table()
            seconds = time.perf_counter() - started
            pipe.send((seconds, normalised(table) if want_rows else table.num_rows, None))
        except Exception as e:  # noqa: BLE001 - reported as the question's error
            pipe.send((None, None, f"{type(e).__name__}: {e}"[:300]))


class DuckDb:
    def __init__(self, files):
        self.pipe, child = mp.Pipe()
        self.process = mp.get_context("spawn").Process(target=duckdb_worker, args=(child, files), daemon=True)
        started = time.perf_counter()
        self.process.start()
        _, self.version, self.threads = self.pipe.recv()
        self.start_seconds = time.perf_counter() - started

    def ask(self, sql, want_rows):
        self.pipe.send((sql, want_rows))
        return self.pipe.recv()

    def close(self):
        self.pipe.send(None)
        rss = self.pipe.recv()
        self.process.join(timeout=30)
        return rss


class Poplar:
    """One `poplar serve` and an ADBC connection per role."""

    def __init__(self, binary, store, work, flags, extra_env=(), roles=("steward", "commissioner"), user_prefix="bench"):
        from adbc_driver_flightsql import dbapi as flight_sql

        work.mkdir(parents=True, exist_ok=True)
        users = work / "users.toml"
        users.unlink(missing_ok=True)
        tokens = {}
        for role in roles:
            out = subprocess.run([binary, "users", "add", f"{user_prefix}-{role}", "--role", role, "--users", str(users)],
                                 check=True, capture_output=True, text=True)
            tokens[role] = out.stdout.strip()
        self.log = work / "server.log"
        # The server logs what a query spilled to disk (from the plan's metrics) at info.
        env = {**os.environ, "POPLAR_LOG": os.environ.get("POPLAR_LOG", "warn") + f",{SPILL_TARGET}=info",
               **dict(extra_env)}
        started = time.perf_counter()
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [binary, "serve", "--store", str(store), "--users", str(users), "--addr", "127.0.0.1:0", *flags],
                stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        line = self.process.stdout.readline()
        match = re.search(r"grpc://(\S+)", line)
        if not match:
            raise RuntimeError(f"poplar serve did not start: {line!r}; see {self.log}")
        self.listening_seconds = time.perf_counter() - started
        self.connections = {
            role: flight_sql.connect(f"grpc://{match.group(1)}",
                                     db_kwargs={"username": f"{user_prefix}-{role}", "password": token}, autocommit=True)
            for role, token in tokens.items()
        }
        with self.connections["steward"].cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetch_arrow_table()
        self.ready_seconds = time.perf_counter() - started

    def log_offset(self):
        return self.log.stat().st_size

    def spilled_since(self, offset):
        """Queries that spilled, and the bytes they spilled, from the server's log since `offset`."""
        with open(self.log, "rb") as log:
            log.seek(offset)
            lines = [line for line in log.read().decode(errors="replace").splitlines() if SPILL_MESSAGE in line]
        return {"queries": len(lines),
                "bytes": sum(int(m.group(1)) for line in lines if (m := re.search(r"spilled_bytes=(\d+)", line)))}

    def ask(self, role, sql, want_rows):
        try:
            with self.connections[role].cursor() as cur:
                started = time.perf_counter()
                cur.execute(sql)
                table = cur.fetch_arrow_table()
                seconds = time.perf_counter() - started
            return seconds, normalised(table) if want_rows else table.num_rows, None
        except Exception as e:  # noqa: BLE001 - a refusal is the question's result for that role
            return None, None, f"{type(e).__name__}: {e}"[:300]

    def close(self):
        for conn in self.connections.values():
            conn.close()
        rss = peak_rss_mib(self.process.pid)
        self.process.terminate()
        self.process.wait(timeout=60)
        return rss


def key_value(text):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def first_practice(store):
    """The first GP practice by code, for the per-organisation question."""
    import pyarrow as pa

    organisations = pa.table(DeltaTable(str(store / "organisations")).to_pyarrow_table()).to_pylist()
    return min(o["ods_code"] for o in organisations if o["org_type"] == "gp_practice")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poplar", required=True, help="the poplar binary (release)")
    parser.add_argument("--store", required=True, type=pathlib.Path, help="a landed local store")
    parser.add_argument("--patients", type=int, required=True, help="the region's size, for the record")
    parser.add_argument("--source-rows", type=int, default=None, help="source rows loaded, for the record")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--output", type=pathlib.Path, required=True)
    parser.add_argument("--only", default=None, help="comma-separated question ids")
    parser.add_argument("--user-prefix", default="bench",
                        help="names of the users the run creates ({prefix}-steward, {prefix}-commissioner): the server keeps "
                             "each commissioner's daily answer budget (2,000) across restarts, from the store's audit log, "
                             "so a store benchmarked many times in one day needs fresh users")
    parser.add_argument("--serve-flag", action="append", default=[], help="passed to poplar serve")
    parser.add_argument("--poplar-env", action="append", default=[], type=key_value,
                        help="KEY=VALUE in the main server's environment (e.g. a DATAFUSION_* setting)")
    parser.add_argument("--baseline", default=None, help="a second poplar binary, answering as a steward and as a commissioner")
    parser.add_argument("--baseline-store", default=None, type=pathlib.Path,
                        help="the baseline reads this store instead of --store (a layout A/B: the same region landed "
                             "two ways; DuckDB reads --store)")
    parser.add_argument("--baseline-env", action="append", default=[], type=key_value,
                        help="KEY=VALUE in the baseline server's environment")
    parser.add_argument("--baseline-serve-flag", action="append", default=None,
                        help="passed to the baseline's poplar serve instead of --serve-flag")
    parser.add_argument("--baseline-without-serve-flags", action="store_true",
                        help="the baseline gets no --serve-flag (e.g. one server beside a cluster's front end: "
                             "--serve-flag=--cluster --serve-flag=df://HOST:PORT --baseline-without-serve-flags)")
    args = parser.parse_args()

    store = args.store.resolve()
    files = snapshot_files(store)
    work = pathlib.Path(tempfile.mkdtemp(prefix="poplar-compare-"))
    duck = DuckDb(files)
    poplar = Poplar(args.poplar, store, work, args.serve_flag, args.poplar_env, user_prefix=args.user_prefix)
    baseline_flags = ([] if args.baseline_without_serve_flags
                      else args.serve_flag if args.baseline_serve_flag is None else args.baseline_serve_flag)
    baseline_store = args.baseline_store.resolve() if args.baseline_store else store
    baseline = (Poplar(args.baseline, baseline_store, work / "baseline", baseline_flags, args.baseline_env,
                       user_prefix=args.user_prefix)
                if args.baseline else None)
    all_engines = ENGINES + (["baseline", "baseline_commissioner"] if baseline else [])
    asked = questions(first_practice(store))
    if args.only:
        wanted = set(args.only.split(","))
        asked = [q for q in asked if q.id in wanted]

    results = []
    failed = []
    for q in asked:
        engines = [e for e in all_engines if not (q.poplar_only and e == "duckdb")]

        def ask(engine, want_rows=False, sql=q.sql):
            if engine == "duckdb":
                return duck.ask(sql, want_rows)
            if engine == "baseline":
                return baseline.ask("steward", sql, want_rows)
            if engine == "baseline_commissioner":
                return baseline.ask("commissioner", sql, want_rows)
            return poplar.ask(engine, sql, want_rows)

        log_offset = poplar.log_offset()
        warm = {e: ask(e, want_rows=not e.endswith("commissioner")) for e in engines}
        errors = {e: warm[e][2] for e in engines if warm[e][2]}
        same = None
        if "duckdb" in engines and not {"duckdb", "steward"} & errors.keys():
            same = warm["duckdb"][1] == warm["steward"][1]
            if not same:
                failed.append(f"{q.id}: the steward's answer ({len(warm['steward'][1])} rows) differs from DuckDB's "
                              f"({len(warm['duckdb'][1])} rows)")
        if "baseline" in engines and not {"baseline", "steward"} & errors.keys() \
                and warm["baseline"][1] != warm["steward"][1]:
            failed.append(f"{q.id}: the baseline's answer differs from the steward's")
        times = {e: [] for e in engines if e not in errors}
        for i in range(args.iterations):
            order = [e for e in engines if e in times]
            order = order[i % len(order):] + order[:i % len(order)] if order else order
            for e in order:
                seconds, _, error = ask(e)
                if error:
                    raise RuntimeError(f"{q.id}: {e} failed after its warm-up: {error}")
                times[e].append(seconds)
        medians = {e: statistics.median(t) for e, t in times.items()}
        spilled = poplar.spilled_since(log_offset)
        record = {
            "suite": "compare", "question": q.id, "title": q.title, "patients": args.patients,
            "medians_seconds": medians, "seconds": times, "errors": errors, "same_answer_as_duckdb": same,
            "rows": {e: (len(warm[e][1]) if isinstance(warm[e][1], list) else warm[e][1]) for e in engines
                     if e not in errors},
            "poplar_spilled": spilled,
        }
        if "duckdb" in medians and "steward" in medians:
            record["steward_vs_duckdb"] = medians["steward"] / medians["duckdb"]
        if "commissioner" in medians and "steward" in medians:
            record["commissioner_vs_steward"] = medians["commissioner"] / medians["steward"]
        if "baseline" in medians and "steward" in medians:
            record["steward_vs_baseline"] = medians["steward"] / medians["baseline"]
        if "baseline_commissioner" in medians and "commissioner" in medians:
            record["commissioner_vs_baseline"] = medians["commissioner"] / medians["baseline_commissioner"]
        results.append(record)
        print(f"{q.id}: " + ", ".join(f"{e} {m * 1000:.1f} ms" for e, m in medians.items())
              + (f"; errors: {errors}" if errors else "")
              + (f"; Poplar spilled {spilled['bytes']:,} bytes in {spilled['queries']} of its runs"
                 if spilled["queries"] else ""), file=sys.stderr, flush=True)

    poplar_rss = poplar.close()
    baseline_rss = baseline.close() if baseline else None
    duck_rss = duck.close()
    run = {
        "suite": "compare-run", "patients": args.patients, "source_rows": args.source_rows,
        "iterations": args.iterations,
        "poplar": {"listening_seconds": poplar.listening_seconds, "ready_seconds": poplar.ready_seconds,
                   "peak_rss_mib": poplar_rss, "serve_flags": args.serve_flag, "env": dict(args.poplar_env)},
        "duckdb": {"version": duck.version, "threads": duck.threads, "start_seconds": duck.start_seconds,
                   "peak_rss_mib": duck_rss},
        "files": {t: len(f) for t, f in files.items()},
        **({"baseline": {"binary": args.baseline, "env": dict(args.baseline_env), "serve_flags": baseline_flags,
                         "peak_rss_mib": baseline_rss, "store": str(baseline_store),
                         "ready_seconds": baseline.ready_seconds}} if baseline else {}),
        "machine": {"cores": os.cpu_count(), "os": platform.system(), "arch": platform.machine(),
                    "python": platform.python_version()},
        "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    with open(args.output, "a") as out:
        for record in [*results, run]:
            out.write(json.dumps(record) + "\n")

    extra = " Poplar baseline, steward | Poplar baseline, commissioner |" if baseline else ""
    print(f"| question | DuckDB {duck.version} | Poplar, steward | Poplar, commissioner |{extra}")
    print("| --- | --- | --- | --- |" + (" --- | --- |" if baseline else ""))
    for r in results:
        m = r["medians_seconds"]
        cell = {e: (f"{m[e] * 1000:,.0f} ms" if e in m else ("refused" if e in r["errors"] else "—"))
                for e in all_engines}
        if "steward_vs_duckdb" in r:
            cell["steward"] += f" ({r['steward_vs_duckdb']:.2f}×)"
        if "commissioner_vs_steward" in r:
            cell["commissioner"] += f" ({r['commissioner_vs_steward']:.2f}× steward)"
        spill = r["poplar_spilled"]
        note = (f" (Poplar spilled {spill['bytes'] / 2**20:,.0f} MiB in {spill['queries']} runs)"
                if spill["queries"] else "")
        if "steward_vs_baseline" in r:
            cell["steward"] += f" [{r['steward_vs_baseline']:.2f}× baseline]"
        if "commissioner_vs_baseline" in r:
            cell["commissioner"] += f" [{r['commissioner_vs_baseline']:.2f}× baseline]"
        print(f"| {r['title']}{note} | {cell['duckdb']} | {cell['steward']} | {cell['commissioner']} |"
              + (f" {cell['baseline']} | {cell['baseline_commissioner']} |" if baseline else ""))
    print(f"\nPoplar: listening {poplar.listening_seconds:.2f} s, ready {poplar.ready_seconds:.2f} s, "
          f"peak RSS {poplar_rss:,.0f} MiB; DuckDB: peak RSS {duck_rss:,.0f} MiB (its worker process, "
          f"Python included), {duck.threads} threads")
    if failed:
        print("\n".join(failed), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
