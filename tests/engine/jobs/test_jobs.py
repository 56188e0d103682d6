import threading

import pytest

from engine.jobs.runner import JobRunner, JobState


@pytest.fixture
def runner_and_events():
    events = []
    runner = JobRunner(on_event=events.append)
    yield runner, events
    runner.shutdown(timeout=5)


def test_jobs_run_in_order_with_progress_and_partial_results(runner_and_events):
    runner, events = runner_and_events
    order = []

    def work(ctx, name):
        for i in range(3):
            ctx.progress(i + 1, 3, name)
            ctx.partial((name, i))
        order.append(name)
        return name.upper()

    a = runner.submit("a", lambda ctx: work(ctx, "a"))
    b = runner.submit("b", lambda ctx: work(ctx, "b"))
    assert b.wait(5) and a.done
    assert order == ["a", "b"]
    assert (a.state, a.result, b.result) == (JobState.FINISHED, "A", "B")
    kinds_a = [e.kind for e in events if e.job_id == a.id]
    assert kinds_a == ["started"] + ["progress", "partial"] * 3 + ["finished"]
    assert [e.payload for e in events if e.job_id == b.id and e.kind == "partial"] == [("b", 0), ("b", 1), ("b", 2)]


def test_cancel_stops_a_running_job_and_skips_a_queued_one(runner_and_events):
    runner, events = runner_and_events
    started = threading.Event()
    steps = []

    def long_job(ctx):
        started.set()
        while True:
            ctx.check_cancelled()
            steps.append(1)
            threading.Event().wait(0.001)

    running = runner.submit("long", long_job)
    queued = runner.submit("never", lambda ctx: steps.append("ran"))
    assert started.wait(5)
    queued.cancel()
    running.cancel()
    assert running.wait(5) and queued.wait(5)
    assert running.state is JobState.CANCELLED and queued.state is JobState.CANCELLED
    assert "ran" not in steps
    assert not any(e.kind == "started" for e in events if e.job_id == queued.id)


def test_a_failing_job_reports_a_clear_error_and_the_runner_keeps_working(runner_and_events):
    runner, events = runner_and_events

    def broken(ctx):
        raise ValueError("loss is NaN at step 3")

    bad = runner.submit("retrain", broken)
    good = runner.submit("after", lambda ctx: 42)
    assert good.wait(5)
    assert bad.state is JobState.FAILED and "ValueError: loss is NaN at step 3" in bad.error
    assert good.result == 42
    failed = [e for e in events if e.kind == "failed"]
    assert len(failed) == 1 and failed[0].payload == bad.error


def test_serve_can_run_on_a_thread_the_host_owns():
    runner = JobRunner(start_thread=False)
    seen = []
    host = threading.Thread(target=runner.serve, name="host")
    host.start()
    job = runner.submit("who", lambda ctx: seen.append(threading.current_thread().name))
    assert job.wait(5)
    runner.shutdown()
    host.join(5)
    assert seen == ["host"] and not host.is_alive()
