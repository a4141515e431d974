"""deploy/k8s and deploy/airflow (SPEC §9): the Kubernetes Jobs run exactly the commands the
README documents, and running them as the Jobs would (the shards by completion index) gives the
bytes of a one-machine run; the Airflow DAG imports without errors, and its tasks, run in order,
publish the same cycle.

Needs INCENTIVES_BIN (the engine), PyYAML and Airflow; scripts/test installs them.
"""

import os
import re
import shlex
import subprocess
import tempfile
import unittest

import yaml

import published

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("INCENTIVES_BIN", os.path.join(REPO, "target", "debug", "incentives"))
RULES = os.path.join(REPO, "rules", "reference")
DEMO = os.path.join(REPO, "fixtures", "demo", "2026-10")
MANIFEST = os.path.join(REPO, "deploy", "k8s", "incentives-month.yaml")


def documented():
    """The step commands in the README's cluster-commands block, whitespace normalised."""
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    block = re.search(r"<!-- cluster-commands.*?```sh\n(.*?)```", text, re.S).group(1)
    return [" ".join(line.split()) for line in block.strip().splitlines()]


def job_scripts():
    """Each Job's shell script by name, and the ConfigMap's data."""
    with open(MANIFEST) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    config = next(d["data"] for d in docs if d["kind"] == "ConfigMap")
    jobs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Job"}
    scripts = {}
    for name, job in jobs.items():
        (container,) = job["spec"]["template"]["spec"]["containers"]
        command = container["command"]
        assert command[:2] == ["sh", "-c"], command
        scripts[name] = command[2]
    return jobs, scripts, config


def engine_commands(script):
    """The `incentives ...` commands of a script, whitespace normalised."""
    parts = [" ".join(p.split()) for p in re.split(r"&&|\n", script)]
    return [p for p in parts if p.startswith("incentives ")]


def one_machine(tmp):
    out = os.path.join(tmp, "one", "out")
    done = subprocess.run([BIN, "run", "--cycle", "2026-10", "--first-cycle", "--input", DEMO,
                           "--rules", RULES, "--state", os.path.join(tmp, "one", "state"),
                           "--out", out], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return published.files(os.path.join(out, "2026-10"))


class Kubernetes(unittest.TestCase):
    def test_the_jobs_run_the_documented_commands(self):
        jobs, scripts, config = job_scripts()
        used = [c for s in scripts.values() for c in engine_commands(s)]
        self.assertEqual(sorted(used), sorted(documented()))
        shards = jobs["incentives-shards"]["spec"]
        self.assertEqual(shards["completionMode"], "Indexed")
        self.assertEqual(shards["completions"], int(config["SHARDS"]))
        self.assertEqual(shards["parallelism"], int(config["SHARDS"]))
        for job in jobs.values():
            rules = job["spec"]["podFailurePolicy"]["rules"]
            self.assertEqual(rules[0]["action"], "FailJob")
            self.assertEqual(sorted(rules[0]["onExitCodes"]["values"]), [2, 3, 4])

    def test_the_jobs_commands_publish_a_one_machine_run(self):
        _, scripts, config = job_scripts()
        with tempfile.TemporaryDirectory() as tmp:
            shim = os.path.join(tmp, "bin")
            os.makedirs(shim)
            os.symlink(BIN, os.path.join(shim, "incentives"))
            env = dict(os.environ, **config)
            env.update(PATH=shim + os.pathsep + os.environ["PATH"], INPUT=DEMO, RULES=RULES,
                       STATE=os.path.join(tmp, "state"), PARTS=os.path.join(tmp, "parts"),
                       OUT=os.path.join(tmp, "out"), CYCLE="2026-10",
                       FIRST_CYCLE="--first-cycle")

            def job(name, index=None):
                run_env = dict(env)
                if index is not None:
                    run_env["JOB_COMPLETION_INDEX"] = str(index)
                done = subprocess.run(["sh", "-c", scripts[name]], env=run_env,
                                      capture_output=True, text=True)
                self.assertEqual(done.returncode, 0, name + ": " + done.stderr)

            job("incentives-split")
            for index in reversed(range(int(config["SHARDS"]))):
                job("incentives-shards", index)
            job("incentives-merge")
            self.assertEqual(published.files(os.path.join(env["OUT"], "2026-10")), one_machine(tmp))


class Airflow(unittest.TestCase):
    def test_the_dag_imports_without_errors(self):
        from airflow.models import DagBag

        bag = DagBag(dag_folder=os.path.join(REPO, "deploy", "airflow"), include_examples=False)
        self.assertEqual(bag.import_errors, {})
        dag = bag.dags["incentives_month"]
        shards = int(os.environ.get("INCENTIVES_SHARDS", "8"))
        self.assertEqual(len(dag.tasks), 2 + 2 * shards)
        self.assertEqual(dag.get_task("merge").upstream_task_ids,
                         {"fold_%d" % k for k in range(1, shards + 1)})

    def test_the_dags_tasks_publish_a_one_machine_run(self):
        import importlib.util

        import pendulum

        with tempfile.TemporaryDirectory() as tmp:
            os.makedirs(os.path.join(tmp, "exports"))
            os.symlink(DEMO, os.path.join(tmp, "exports", "2026-10"))
            settings = dict(BIN=BIN, INPUT=os.path.join(tmp, "exports"), RULES=RULES,
                            STATE=os.path.join(tmp, "state"), PARTS=os.path.join(tmp, "parts"),
                            OUT=os.path.join(tmp, "out"))
            saved = dict(os.environ)
            os.environ.update({"INCENTIVES_" + k: v for k, v in settings.items()})
            try:
                path = os.path.join(REPO, "deploy", "airflow", "incentives_month.py")
                spec = importlib.util.spec_from_file_location("incentives_month", path)
                dag_module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(dag_module)
                context = {"logical_date": pendulum.datetime(2026, 11, 5, tz="UTC"),
                           "params": {"first_cycle": True}}
                dag_module.split(**context)
                for k in range(1, dag_module.SHARDS + 1):
                    dag_module.run_shard(k, **context)
                    dag_module.fold(k, **context)
                dag_module.merge(**context)
            finally:
                os.environ.clear()
                os.environ.update(saved)
            self.assertEqual(published.files(os.path.join(settings["OUT"], "2026-10")), one_machine(tmp))


if __name__ == "__main__":
    unittest.main()
