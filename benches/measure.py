"""Runs one command and prints its wall time and peak RSS, as JSON; or runs the anchor query.

    measure.py cmd ARG...                  -> {"wall_s": ..., "peak_rss_mb": ..., "status": ...}
    measure.py duckdb SQL DIR THREADS      -> the same, for DuckDB running benches/anchor.sql
"""
import json
import resource
import subprocess
import sys
import time


def run_command(argv):
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr.decode(errors="replace"))
    return {"wall_s": wall, "peak_rss_mb": rss_kb / 1024, "status": proc.returncode}


def run_duckdb(sql_path, bundle, threads):
    import duckdb

    sql = open(sql_path).read().replace("${DIR}", bundle)
    con = duckdb.connect()
    con.execute(f"SET threads = {int(threads)}")
    start = time.perf_counter()
    rows = con.execute(sql).fetchall()
    wall = time.perf_counter() - start
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"wall_s": wall, "peak_rss_mb": rss_kb / 1024, "status": 0, "rows": len(rows)}


if __name__ == "__main__":
    if sys.argv[1] == "duckdb":
        print(json.dumps(run_duckdb(*sys.argv[2:5])))
    else:
        print(json.dumps(run_command(sys.argv[2:])))
