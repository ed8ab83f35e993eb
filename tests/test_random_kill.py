"""Whole-run random kills, as an operator meets them: the whole `snakemake` process group gets SIGKILL, SIGINT
or SIGTERM at a seeded random moment of a one-camera, one-epoch demo run (the repository build included),
sometimes the first rerun too; rerunning the same command must then succeed and leave exactly a clean run's
registry, datastore and Snakemake state. No fault-injection seam: see tests/killtrials.py.

The trials are slow (a clean run plus about one run per trial, ~5 minutes on 2 cores): marked `killtrials`,
deselect with `-m "not killtrials"`. The harness's own tests (seconds) are not marked. Wider seeded sweeps:
`python bench/kill_sweep.py --trials 30 --seed 1`.
"""

from __future__ import annotations

import signal

import pytest

from killtrials import Kill, Reference, clean_reference, group_members, plan_trial, run_group, run_trial

SEED = 20261126
# (trial index, first signal, second signal or None): every signal once, SIGINT then SIGTERM as the double
# fault (an operator's Ctrl-C, then SLURM ending the job); the moments are the seed's. test_signals sends each
# signal to a job and to Snakemake at a chosen moment.
CASES = [
    (0, signal.SIGKILL, None),
    (1, signal.SIGINT, signal.SIGTERM),
]


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> Reference:
    """Never killed, same config: the reference state, and the duration the kill moments are drawn over."""
    return clean_reference(tmp_path_factory.mktemp("clean"))


@pytest.mark.killtrials
@pytest.mark.parametrize(
    "index,first,second",
    CASES,
    ids=[f"{first.name}{f'-{second.name}' if second else ''}" for _, first, second in CASES],
)
def test_killed_run_recovers_to_the_clean_state(clean_run, tmp_path, index, first, second):
    plan = plan_trial(SEED, index, first=first, double=second is not None, second=second)
    result = run_trial(plan, tmp_path, clean_run)
    killed = [a for a in result.attempts if a.kill is not None]
    assert [a.kill.signal for a in killed] == [first, second][: 1 + (second is not None)]  # the plan was run
    # a kill that came after the run had finished tested nothing (the machine ran faster than the clean run)
    assert killed[0].landed, result.report()
    assert result.ok, result.report()


def test_trial_plans_are_a_function_of_seed_and_index():
    assert plan_trial(7, 3) == plan_trial(7, 3)
    assert [plan_trial(7, i) for i in range(8)] != [plan_trial(8, i) for i in range(8)]
    # pinning the signal or the double fault keeps the seed's moments (the test's trials replay in a sweep)
    pinned = plan_trial(7, 3, first=signal.SIGTERM, double=True)
    assert pinned.first == Kill(plan_trial(7, 3).first.at, signal.SIGTERM) and pinned.second is not None
    assert all(0 <= plan_trial(7, i).first.at < 1 for i in range(50))


def test_a_kill_leaves_no_process_of_the_session(tmp_path):
    # every process ignores SIGTERM, and one job runs in a process group of its own (job control on)
    script = "set -m; trap '' TERM; sleep 300 & sleep 300 & wait"
    attempt = run_group(
        ["bash", "-c", script], tmp_path, tmp_path / "log", "ignores SIGTERM", Kill(0, signal.SIGTERM), 0.5, grace=1
    )
    assert attempt.landed and attempt.returncode == -signal.SIGKILL
    assert sorted(cmd for _pid, cmd in attempt.escalated if cmd.startswith("sleep")) == ["sleep 300"] * 2
    assert group_members(attempt.pid) == []


def test_sigint_reaches_the_run_even_when_the_harness_ignores_it(tmp_path):
    # a harness started in the background by a shell has SIGINT ignored; its runs must still get Ctrl-C
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        attempt = run_group(["sleep", "300"], tmp_path, tmp_path / "log", "Ctrl-C", Kill(0, signal.SIGINT), 0.5)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert attempt.landed and attempt.returncode == -signal.SIGINT and not attempt.escalated
