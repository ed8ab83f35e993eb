"""The Snakemake behaviour pfscalib.internals.snakemake relies on, checked against the pinned Snakemake:
if an upgrade changes any of it, these tests fail (and say what the workflow would lose)."""

from __future__ import annotations

import re
from pathlib import Path

from pfscalib.internals.snakemake import declared, is_rerun_trigger, rerun_trigger

from conftest import PROJECT


def test_a_command_of_the_wildcards_is_a_params_rerun_trigger():
    """Snakemake compares params built from the wildcards only across runs; params that take output,
    input, threads or resources are "derived" and never compared. rerun_trigger hands its builder the
    wildcards only, so a step command stays a trigger whatever the builder does."""
    assert is_rerun_trigger(rerun_trigger(lambda wildcards: "pipetask run ..."))
    for extra in ("output", "input", "threads", "resources"):
        derived = declared(eval(f"lambda wildcards, {extra}: 'x'"))
        assert not is_rerun_trigger(derived), f"Snakemake now compares params that take {extra}"


def test_every_rule_command_is_built_as_intended():
    """Step and fiberProfilesInputs commands are rerun triggers (built by rerun_trigger); the check, QA,
    drift and quality-table commands take output on purpose (see rules/common.smk). A params function
    written directly in a rule would bypass that choice."""
    rules = "\n".join(p.read_text() for p in sorted((PROJECT / "rules").glob("*.smk")))
    commands = re.findall(r"^\s+cmd=(.*),$", rules, re.M)
    assert commands and all(
        c.startswith(("rerun_trigger(", "step_command(", "WF.commands."))
        or c in ("check_command", "qa_command", "drift_command", "quality_command")
        for c in commands
    ), commands
    assert "return rerun_trigger(" in (PROJECT / "rules/common.smk").read_text()


def test_declared_resource_evaluation_passes_what_snakemake_passed_before():
    """declare_resource_evaluation only caches Resource.evaluate's parameters: Snakemake hands it the
    same arguments as with inspect.signature, and an attempt-scaled mem_mb still grows per attempt."""
    import inspect

    from snakemake.common import get_function_params, get_input_function_aux_params
    from snakemake.iocontainers import Wildcards
    from snakemake.resources import Resource

    from pfscalib.internals.snakemake import declare_resource_evaluation, declared

    def mem_mb(wildcards, attempt):
        return 16000 * attempt

    resource = Resource("mem_mb", declared(mem_mb)).standardize_size()
    candidates = {"input": [], "attempt": 2, "threads": 4, "rulename": "bias", "async_run": None}
    params = inspect.signature(resource.evaluate).parameters  # what Snakemake read before
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    inspected = {k: v for k, v in candidates.items() if takes_any or k in params}
    declare_resource_evaluation()
    assert get_function_params(resource.evaluate) is get_function_params(Resource.evaluate)
    assert get_input_function_aux_params(resource.evaluate, candidates) == inspected == candidates
    assert resource.evaluate(Wildcards(), **candidates).value == 32000


def test_the_disk_budget_is_read_back_and_snakemake_caps_a_larger_job(tmp_path):
    """disk_budget reads --resources disk_mb (given as disk=2GB too) from the workflow; Snakemake itself
    caps a job's larger disk_mb at the budget and runs it, which is why the workflow refuses such a job
    before any job (rules/common.smk)."""
    from conftest import run

    (tmp_path / "Snakefile").write_text(
        "from pfscalib.internals.snakemake import disk_budget\n"
        "print('budget', disk_budget(workflow))\n"
        "rule big:\n    output: 'x'\n    resources: disk_mb=5000\n    shell: 'touch x'\n"
    )
    proc = run(["snakemake", "-n", "--cores", "1", "--resources", "disk=2GB"], cwd=tmp_path, check=True)
    assert "budget 2000" in proc.stdout
    assert re.search(r"resources: .*disk_mb=2000\b", proc.stdout + proc.stderr)


FORCE_SNAKEFILE = """
import os
import sys
sys.path.insert(0, {scripts!r})
from pfscalib.internals.snakemake import incomplete, user_forced

onstart:
    forced, outputs = user_forced(workflow)
    print("FORCED", ",".join(sorted(forced)), "RUN", ",".join(sorted(outputs)), file=sys.stderr)
    print("INCOMPLETE", ",".join(sorted(incomplete(workflow, ["a.txt", "b.txt"]))), file=sys.stderr)

rule all:
    input: "b.txt"

rule a:
    output: "a.txt"
    shell: "touch {{output}}"

rule b:
    input: "a.txt"
    output: "b.txt"
    shell: "touch {{output}}" + ("; sleep 600" if os.environ.get("KILL_SNAKEMAKE") else "")
"""


def test_user_forced_jobs_are_told_from_incomplete_ones(tmp_path):
    """The jobs the user forces (-F, -R, --forcerun FILE, -f) are read from the run's DAG; a job Snakemake
    reruns because a killed run left its output incomplete (--rerun-incomplete) is not forced: pfscalib
    resumes that one and rebuilds the forced ones (pfscalib.job.run). `incomplete` names exactly the outputs
    of jobs started and never recorded (onsuccess keeps their states)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "Snakefile").write_text(FORCE_SNAKEFILE.format(scripts=str(PROJECT / "scripts")))
    snakemake = [str(Path(sys.executable).parent / "snakemake"), "--cores", "1", "--rerun-incomplete"]

    seen_incomplete: list[str] = []

    def forced(*args: str, kill: bool = False) -> tuple[str, str]:
        env = {**os.environ, "KILL_SNAKEMAKE": "1" if kill else ""}
        if kill:  # b's job sleeps once its output exists; Snakemake is killed then, as by a power cut
            (tmp_path / "b.txt").unlink()  # so that b.txt below is the killed job's own output
            killed = subprocess.Popen([*snakemake, *args], cwd=tmp_path, env=env, start_new_session=True)
            marker = tmp_path / ".snakemake/incomplete"
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not (
                (tmp_path / "b.txt").exists() and marker.exists() and any(marker.rglob("*"))
            ):
                time.sleep(0.2)
            os.killpg(killed.pid, signal.SIGKILL)
            killed.wait()
            return ("-", "-")
        proc = subprocess.run([*snakemake, *args], cwd=tmp_path, capture_output=True, text=True, env=env)
        incomplete_line = next((ln for ln in proc.stderr.splitlines() if ln.startswith("INCOMPLETE")), "")
        seen_incomplete.append(incomplete_line.removeprefix("INCOMPLETE").strip())
        line = next((ln for ln in proc.stderr.splitlines() if ln.startswith("FORCED")), "")
        parts = line.split()
        return (parts[1] if len(parts) > 3 else "", parts[-1]) if line else ("-", "-")

    assert forced() == ("", "a.txt,b.txt")
    assert forced("-R", "a") == ("a.txt", "a.txt,b.txt")  # b reruns downstream of a, not forced
    assert forced("-F") == ("a.txt,b.txt", "a.txt,b.txt")
    assert forced("--forcerun", "b.txt") == ("b.txt", "b.txt")
    assert forced("-f", "b.txt") == ("b.txt", "b.txt")
    forced("-R", "b", kill=True)  # b's output left incomplete by a killed Snakemake
    assert (tmp_path / ".snakemake/incomplete").exists() and any((tmp_path / ".snakemake/incomplete").iterdir())
    subprocess.run([*snakemake, "--unlock"], cwd=tmp_path, capture_output=True, check=True)  # the killed run's lock
    assert forced() == ("", "b.txt")
    assert seen_incomplete[-1] == "b.txt" and set(seen_incomplete[:-1]) == {""}


def test_onstart_knows_the_epochs_of_the_run_s_jobs(tmp_path):
    """epochs_to_run (which epochs' edited tables the onstart checks again): the epoch wildcards of the jobs
    this run executes, not of those already done or not asked for."""
    from conftest import run

    (tmp_path / "Snakefile").write_text(
        "from pfscalib.internals.snakemake import epochs_to_run\n"
        "onstart:\n    print('epochs', sorted(epochs_to_run(workflow)))\n"
        "rule a:\n    output: '{epoch}.txt'\n    shell: 'touch {output}'\n"
        "rule plain:\n    output: 'plain'\n    shell: 'touch plain'\n"
    )
    (tmp_path / "run1.txt").touch()
    proc = run(["snakemake", "--cores", "1", "run1.txt", "run2.txt", "plain"], cwd=tmp_path, check=True)
    assert "epochs ['run2']" in proc.stdout + proc.stderr


VERDICT_SNAKEFILE = """
import json, sys
sys.path.insert(0, SCRIPTS)
from pfscalib.internals.snakemake import verdicts_not_retried
from pfscalib.plan.records import ends_retries

verdicts_not_retried(lambda job: f"state/{job.wildcards.name}.json", ends_retries)

rule all:
    input: expand("{name}.out", name=["held", "crash", "exit21", "old"])

rule job:
    output: "{name}.out"
    run:
        with open("attempts", "a") as file:
            print(wildcards.name, file=file)
        state = {"held": {"status": "held"}, "exit21": {"status": "failed", "exit": 21}}.get(wildcards.name)
        if state:
            with open(f"state/{wildcards.name}.json", "w") as file:
                json.dump(state, file)
        raise RuntimeError("the job failed")
"""


def test_a_job_ending_on_a_verdict_is_not_restarted_by_snakemake_s_retries(tmp_path):
    """Item 7: Snakemake 9's JobScheduler._handle_error restarts a failed job while job.restart_times exceeds
    its attempts; with verdicts_not_retried a job whose state (written in this run) says held or exit 21 is
    not started again, a crash is, and a state left by an earlier run ("old") is not trusted."""
    import inspect
    import subprocess
    import sys

    from snakemake.scheduling.job_scheduler import JobScheduler

    assert "job.restart_times > job.attempt - 1" in inspect.getsource(JobScheduler._handle_error)
    (tmp_path / "Snakefile").write_text(VERDICT_SNAKEFILE.replace("SCRIPTS", repr(str(PROJECT / "scripts"))))
    (tmp_path / "state").mkdir()
    (tmp_path / "state/old.json").write_text('{"status": "held"}')  # before this Snakemake started
    snakemake = [str(Path(sys.executable).parent / "snakemake"), "--cores", "1", "--keep-going", "--retries", "2"]
    proc = subprocess.run(snakemake, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode != 0
    attempts = (tmp_path / "attempts").read_text().split()
    assert {name: attempts.count(name) for name in set(attempts)} == {"held": 1, "exit21": 1, "crash": 3, "old": 3}
