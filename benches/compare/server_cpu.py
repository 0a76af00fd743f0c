"""A change's effect on one question: the server's CPU time per answer, two or more builds.

On this shared 2-core machine wall times move with whatever else runs; the CPU time a
server process spends per answer moves much less. Each build serves the same store in
turn (A, B, A, B), answers the question a few times to warm up, then N times measured,
and the CPU time (user + system, from /proc) per answer and the wall time are printed.

    POPLAR_NOISE_KEY=... ~/.cache/poplar/venv/bin/python benches/compare/server_cpu.py \\
        --store STORE --question latest_code_window --role steward --runs 8 OLD_POPLAR NEW_POPLAR
"""

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from compare import Poplar, first_practice  # noqa: E402
from questions import questions  # noqa: E402


def server_cpu_seconds(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("binaries", nargs="+", type=pathlib.Path)
    parser.add_argument("--store", type=pathlib.Path, required=True)
    parser.add_argument("--question", required=True)
    parser.add_argument("--role", choices=["steward", "commissioner"], default="steward")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--output", type=pathlib.Path)
    args = parser.parse_args()
    asked = {q.id: q for q in questions(first_practice(args.store))}
    if args.question not in asked:
        parser.error(f"no question {args.question}; the questions are {', '.join(asked)}")
    sql = asked[args.question].sql
    for round_ in range(args.rounds):
        for binary in args.binaries:
            with tempfile.TemporaryDirectory() as work:
                server = Poplar(binary, args.store, pathlib.Path(work), [], user_prefix=f"cpu{round_}{time.time_ns() % 10**9}")
                cursor = server.connections[args.role].cursor()
                try:
                    for _ in range(3):
                        cursor.execute(sql)
                        cursor.fetch_arrow_table()
                    cpu, wall = server_cpu_seconds(server.process.pid), time.perf_counter()
                    for _ in range(args.runs):
                        cursor.execute(sql)
                        cursor.fetch_arrow_table()
                    result = {
                        "question": args.question,
                        "role": args.role,
                        "binary": str(binary),
                        "round": round_,
                        "runs": args.runs,
                        "cpu_ms": (server_cpu_seconds(server.process.pid) - cpu) * 1000 / args.runs,
                        "wall_ms": (time.perf_counter() - wall) * 1000 / args.runs,
                    }
                    print(json.dumps(result), flush=True)
                    if args.output:
                        with args.output.open("a") as out:
                            out.write(json.dumps(result) + "\n")
                finally:
                    cursor.close()
                    server.process.terminate()
                    server.process.wait()


if __name__ == "__main__":
    main()
