"""deploy/spark/job.py end to end in Spark's local mode (SPEC §9): a two-month chain run as
3 shards, one shard attempt failing (Spark retries it), gives the bytes of a one-machine run;
a final exit code stops the job without a retry and publishes nothing.

Needs INCENTIVES_BIN (the engine) and SPARK_SUBMIT (PySpark's spark-submit); scripts/test sets
both. Run: python3 -m unittest discover -s deploy/tests
"""

import os
import subprocess
import sys
import tempfile
import unittest

import published

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("INCENTIVES_BIN", os.path.join(REPO, "target", "debug", "incentives"))
SPARK_SUBMIT = os.environ.get("SPARK_SUBMIT", "spark-submit")
RULES = os.path.join(REPO, "rules", "reference")
CYCLES = ["2026-10", "2026-11"]

# Fails the first attempt of shard 2's run (exit 1, retryable), then runs the engine.
FLAKY = """#!/bin/sh
if [ "$1" = run ] && [ "$3" = "2/3" ] && [ ! -e "{flag}" ]; then
    touch "{flag}"
    echo "injected failure" >&2
    exit 1
fi
exec "{real}" "$@"
"""


def engine(*args):
    done = subprocess.run([BIN] + list(args), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done


def outputs(out):
    """Every published file of the chain's cycles by path (manifests without timings)."""
    found = {}
    for cycle in CYCLES:
        for name, data in published.files(os.path.join(out, cycle)).items():
            found[os.path.join(cycle, name)] = data
    return found


def submit(tmp, binary, cycle, state, out, rules=RULES):
    args = [SPARK_SUBMIT, "--master", "local[2,4]",
            "--conf", "spark.ui.enabled=false",
            os.path.join(REPO, "deploy", "spark", "job.py"),
            "--bin", binary, "--cycle", cycle,
            "--input", os.path.join(tmp, "in", cycle),
            "--state", state, "--out", out, "--shards", "3", "--rules", rules]
    if cycle == CYCLES[0]:
        args.append("--first-cycle")
    # spark-submit finds Spark through the Python beside it; the workers run this Python.
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    env["PATH"] = os.path.dirname(os.path.abspath(sys.executable)) + os.pathsep + env["PATH"]
    return subprocess.run(args, capture_output=True, text=True, env=env)


class SparkJob(unittest.TestCase):
    def test_shards_on_spark_give_the_bytes_of_one_machine(self):
        with tempfile.TemporaryDirectory() as tmp:
            engine("generate", "--cycle", CYCLES[0], "--cycles", str(len(CYCLES)),
                   "--lines", "4000", "--partners", "20", "--seed", "11",
                   "--bad-rows", "0.01", "--out", os.path.join(tmp, "in"))
            for i, cycle in enumerate(CYCLES):
                engine("run", "--cycle", cycle, "--input", os.path.join(tmp, "in", cycle),
                       "--rules", RULES, "--state", os.path.join(tmp, "one", "state"),
                       "--out", os.path.join(tmp, "one", "out"),
                       *(["--first-cycle"] if i == 0 else []))

            flag = os.path.join(tmp, "failed-once")
            flaky = os.path.join(tmp, "flaky-incentives")
            with open(flaky, "w") as f:
                f.write(FLAKY.format(flag=flag, real=BIN))
            os.chmod(flaky, 0o755)
            state, out = os.path.join(tmp, "spark", "state"), os.path.join(tmp, "spark", "out")
            for cycle in CYCLES:
                done = submit(tmp, flaky, cycle, state, out)
                self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
            self.assertTrue(os.path.exists(flag), "an attempt of shard 2 failed")

            one, spark = outputs(os.path.join(tmp, "one", "out")), outputs(out)
            self.assertEqual(sorted(one), sorted(spark))
            for name in one:
                self.assertTrue(one[name] == spark[name], name + " differs")

    def test_a_final_exit_code_stops_the_job_without_retries(self):
        with tempfile.TemporaryDirectory() as tmp:
            engine("generate", "--cycle", CYCLES[0], "--lines", "500", "--seed", "3",
                   "--out", os.path.join(tmp, "in"))
            out = os.path.join(tmp, "out")
            missing_rules = os.path.join(tmp, "no-such-rules")
            done = submit(tmp, BIN, CYCLES[0], os.path.join(tmp, "state"), out,
                          rules=missing_rules)
            self.assertEqual(done.returncode, 2, done.stdout + done.stderr)
            self.assertFalse(os.path.exists(os.path.join(out, CYCLES[0])))


if __name__ == "__main__":
    unittest.main()
