"""One month of incentives as Spark tasks (SPEC §9): split, the shards, their folds, the merge.

    spark-submit --master 'local[2,4]' deploy/spark/job.py --bin PATH --cycle YYYY-MM \
        --input DIR --state DIR --out DIR --shards N [--rules DIR] [--first-cycle] \
        [--parts DIR] [--format csv|parquet]

Spark schedules and retries; the engine does the work. Each step is one task that runs the
engine's command for it; its exit code decides what Spark does:
  0     done (a duplicate attempt of a step that already published is a no-op, exit 0);
  1, 5  the task fails, and Spark retries it (a missing part, a full disk, a held lock);
  2, 3, 4  final (bad usage or rules, rejected input, reconciliation failed): the task reports
        the code without failing, and the job stops with it.
A step that still fails when Spark gives up on it (its retries spent) stops the job with exit 1.
In local mode a task is retried only if the master says so: local[N,F] runs N tasks at once
and tries each up to F times.

The parts folder must be one every executor sees (a shared folder, or s3:// once the engine
reads it there). Its default is PARTS = OUT/.parts/<cycle>; it is kept after the merge so a
failed merge can be retried alone; remove it once the cycle is published.
"""

import argparse
import os
import subprocess
import sys

FINAL = (2, 3, 4)


class StepFailed(RuntimeError):
    """A retryable failure (exit 1 or 5): raised so Spark fails the task and retries it."""


def step(binary, args):
    """Runs one engine command; returns (exit code, its words) unless Spark should retry."""
    done = subprocess.run([binary] + args, capture_output=True, text=True)
    words = (done.stdout + done.stderr).strip()
    if done.returncode == 0 or done.returncode in FINAL:
        return done.returncode, " ".join(args[:3]), words
    raise StepFailed(
        "incentives %s exited %d: %s" % (" ".join(args), done.returncode, words)
    )


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin", required=True, help="the incentives binary, on every executor")
    p.add_argument("--cycle", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--state", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--shards", required=True, type=int)
    p.add_argument("--rules", default="rules/reference")
    p.add_argument("--first-cycle", action="store_true")
    p.add_argument("--parts", help="default: OUT/.parts/<cycle>")
    p.add_argument("--format", default="csv", choices=["csv", "parquet"])
    args = p.parse_args(argv)
    if args.shards < 1:
        p.error("--shards must be at least 1")
    args.parts = args.parts or os.path.join(args.out, ".parts", args.cycle)
    return args


def commands(a):
    """The engine's commands, step by step, as the README documents them."""
    first = ["--first-cycle"] if a.first_cycle else []
    n = a.shards
    split = ["split", "--cycle", a.cycle, "--input", a.input, "--state", a.state,
             "--shards", str(n), "--parts", a.parts] + first
    runs = [["run", "--shard", "%d/%d" % (k, n), "--parts", a.parts, "--rules", a.rules,
             "--format", a.format] for k in range(1, n + 1)]
    folds = [["fold", "--shard", "%d/%d" % (k, n), "--parts", a.parts]
             for k in range(1, n + 1)]
    merge = ["merge", "--cycle", a.cycle, "--parts", a.parts, "--rules", a.rules,
             "--state", a.state, "--out", a.out, "--format", a.format] + first
    return [[split], runs, folds, [merge]]


def run_stage(sc, binary, stage):
    """One stage's commands as Spark tasks, one partition each; the first final code, if any."""
    results = (
        sc.parallelize(stage, len(stage))
        .map(lambda args: step(binary, args))
        .collect()
    )
    for code, what, words in results:
        if words:
            print("%s: %s" % (what, words), flush=True)
        if code in FINAL:
            return code
    return 0


def main(argv):
    args = parse(argv)
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName("incentives %s" % args.cycle).getOrCreate()
    code = 0
    try:
        for stage in commands(args):
            code = run_stage(spark.sparkContext, args.bin, stage)
            if code:
                break
    except Exception as e:  # a task that failed every attempt Spark gave it
        print("incentives %s: a step failed after Spark's retries: %s" % (args.cycle, e),
              file=sys.stderr, flush=True)
        code = 1
    finally:
        spark.stop()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
