"""The demo's jobs, run against a real server: each kind logs lines of its own kind."""

import random

from switchboard_client import LogHandler

from logs_app.models import LogEntry
from operations import demo


def test_an_agents_steps_log_agent_lines_and_a_data_jobs_steps_data_lines(live, admin_token):
    steps = dict(demo.JOBS)
    assert set(steps["agent run: triage inbox"]) == demo.AGENT_STEPS
    jobs = demo.DemoJobs(live.url, admin_token, pace=200)
    random.seed(7)
    agent = {text.split("{")[0] for _, text in demo.AGENT_LINES}
    data = {text.split("{")[0] for _, text in demo.LINES}
    for session_name, step in (
        ("agent run: triage inbox", "classify"),
        ("nightly ETL", "transform"),
    ):
        session = jobs.client.create_session(session_name)
        task = jobs.client.create_task(session["id"], step)
        handler = LogHandler(live.url, admin_token, session["id"], interval=0.1)
        handler.task_id = task["id"]
        jobs.run_steps(task, handler)
        handler.close()
        messages = list(
            LogEntry.objects.filter(session_id=session["id"]).values_list("message", flat=True)
        )
        assert messages, step
        own, other = (agent, data) if step == "classify" else (data, agent)
        # Besides a failure's traceback, every line is one of its kind's.
        lines = [m for m in messages if not m.startswith("step failed")]
        kinds = {next((p for p in own | other if m.startswith(p)), m) for m in lines}
        assert kinds and kinds <= own, (step, kinds)
