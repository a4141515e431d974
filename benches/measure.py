"""Runs one command and prints its wall time and peak RSS, as JSON; or runs the anchor query.

    measure.py cmd ARG...                  -> {"wall_s": ..., "peak_rss_mb": ..., "status": ...}
    measure.py duckdb SQL DIR THREADS      -> the same, for DuckDB running benches/anchor.sql
    measure.py duckdb-write SQL DIR OUT THREADS
                                           -> the same, for DuckDB running the statements of
                                              benches/outputs_floor.sql into OUT, then syncing them
                                              to disk (as a run fsyncs its outputs)
"""
import json
import os
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


def read_sql(sql_path, bundle):
    """The statements of `sql_path`, comment lines left out (so that a ';' or a placeholder in
    a comment means nothing), with bill_lines.csv's reader and the bundle folder put in."""

    def code(path):
        text = open(path).read()
        return "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("--"))

    lines = code(os.path.join(os.path.dirname(sql_path), "bill_lines.sql"))
    return code(sql_path).replace("${BILL_LINES}", lines).replace("${DIR}", bundle)


def run_duckdb(sql_path, bundle, threads):
    import duckdb

    sql = read_sql(sql_path, bundle)
    con = duckdb.connect()
    con.execute(f"SET threads = {int(threads)}")
    start = time.perf_counter()
    rows = con.execute(sql).fetchall()
    wall = time.perf_counter() - start
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"wall_s": wall, "peak_rss_mb": rss_kb / 1024, "status": 0, "rows": len(rows)}


def run_duckdb_write(sql_path, bundle, out, threads):
    import duckdb

    sql = read_sql(sql_path, bundle).replace("${OUT}", out)
    con = duckdb.connect()
    con.execute(f"SET threads = {int(threads)}")
    start = time.perf_counter()
    for statement in sql.split(";"):
        if statement.strip():
            con.execute(statement)
    con.close()
    os.sync()
    wall = time.perf_counter() - start
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"wall_s": wall, "peak_rss_mb": rss_kb / 1024, "status": 0}


if __name__ == "__main__":
    if sys.argv[1] == "duckdb":
        print(json.dumps(run_duckdb(*sys.argv[2:5])))
    elif sys.argv[1] == "duckdb-write":
        print(json.dumps(run_duckdb_write(*sys.argv[2:6])))
    else:
        print(json.dumps(run_command(sys.argv[2:])))
