"""One month of incentives as an Airflow DAG (SPEC §9): split, then every shard's run and fold,
then the merge. Airflow schedules and retries; the engine does the work.

Exit codes decide retries: 1 and 5 (a missing part, a full disk, a held lock) fail the task and
Airflow retries it; 2, 3 and 4 (bad usage or rules, rejected input, reconciliation failed) fail
it for good (AirflowFailException: no retry). A re-run step that already published is a no-op.

Configure with the environment (INCENTIVES_BIN, _INPUT, _STATE, _PARTS, _OUT, _RULES, _SHARDS)
or Airflow Variables (incentives_bin, ...): the engine, the exports' root (one folder per
cycle), the state, the parts' root, the output root, the rule set, the number of shards. The run's logical date names the cycle: the month before it
(a run on 2026-11-05 closes 2026-10). Trigger with {"first_cycle": true} for a chain's first
month.
"""

import os
import subprocess

import pendulum
from airflow import DAG
from airflow.exceptions import AirflowException, AirflowFailException
from airflow.operators.python import PythonOperator


def setting(name, default):
    """INCENTIVES_<NAME> from the environment, else the Airflow Variable incentives_<name>,
    else the default."""
    if "INCENTIVES_" + name.upper() in os.environ:
        return os.environ["INCENTIVES_" + name.upper()]
    from airflow.models import Variable

    return Variable.get("incentives_" + name, default_var=default)


SHARDS = int(os.environ.get("INCENTIVES_SHARDS", "8"))


def cycle_of(context):
    """The month before the run's logical date, YYYY-MM."""
    return context["logical_date"].subtract(months=1).format("YYYY-MM")


def engine(args):
    """Runs one engine command; its exit code decides whether Airflow retries."""
    binary = setting("bin", "incentives")
    done = subprocess.run([binary] + args, capture_output=True, text=True)
    print(done.stdout + done.stderr)
    if done.returncode in (2, 3, 4):
        raise AirflowFailException("incentives exited %d: final" % done.returncode)
    if done.returncode != 0:
        raise AirflowException("incentives exited %d: retried" % done.returncode)


def paths(context):
    cycle = cycle_of(context)
    first = ["--first-cycle"] if context["params"].get("first_cycle") else []
    return cycle, os.path.join(setting("parts", "/data/parts"), cycle), first


def split(**context):
    cycle, parts, first = paths(context)
    engine(["split", "--cycle", cycle, "--input", os.path.join(setting("input", "/data/exports"), cycle),
            "--state", setting("state", "/data/state"), "--shards", str(SHARDS),
            "--parts", parts] + first)


def run_shard(k, **context):
    _, parts, _ = paths(context)
    engine(["run", "--shard", "%d/%d" % (k, SHARDS), "--parts", parts,
            "--rules", setting("rules", "/rules/reference")])


def fold(k, **context):
    _, parts, _ = paths(context)
    engine(["fold", "--shard", "%d/%d" % (k, SHARDS), "--parts", parts])


def merge(**context):
    cycle, parts, first = paths(context)
    engine(["merge", "--cycle", cycle, "--parts", parts,
            "--rules", setting("rules", "/rules/reference"),
            "--state", setting("state", "/data/state"), "--out", setting("out", "/data/out")] + first)


with DAG(
    dag_id="incentives_month",
    description="Month-end incentives: split, shards, folds, merge",
    schedule="0 6 5 * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params={"first_cycle": False},
    default_args={"retries": 3, "retry_delay": pendulum.duration(minutes=2)},
    tags=["incentives"],
) as dag:
    split_task = PythonOperator(task_id="split", python_callable=split)
    merge_task = PythonOperator(task_id="merge", python_callable=merge)
    for k in range(1, SHARDS + 1):
        run_task = PythonOperator(task_id="run_shard_%d" % k, python_callable=run_shard,
                                  op_kwargs={"k": k})
        fold_task = PythonOperator(task_id="fold_%d" % k, python_callable=fold,
                                   op_kwargs={"k": k})
        split_task >> run_task >> fold_task >> merge_task
