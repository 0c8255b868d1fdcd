"""The demo's jobs, run against a real server: each kind logs lines of its own kind."""

import random

from switchboard_client import LogHandler

from logs_app.models import LogEntry
from operations import agent_demo, demo


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


def test_the_agents_sdk_demo_run_shows_its_steps_and_tokens(live, admin_token):
    jobs = demo.DemoJobs(live.url, admin_token, pace=200)
    session = jobs.client.create_session("agent run: support bot (Agents SDK)", status="running")
    assert jobs.run_sdk(session["id"]) == "completed"
    (task,) = jobs.client.request("GET", "tasks", params={"session": session["id"]})["results"]
    assert task["status"] == "completed" and task["result"] == agent_demo.ANSWER
    assert task["details"]["model_calls"] == 6 and task["details"]["total_tokens"] == 3509
    output = jobs.client.request("GET", f"tasks/{task['id']}/output")
    steps = [(s["status"], s["data"].get("tool")) for s in output["steps"]]
    assert steps.count(("tool_completed", "refund_policy")) == 2
    failed = [s for s in output["steps"] if "error" in s["data"]]
    assert len(failed) == 1 and failed[0]["data"]["tool"] == "refund_policy"
    assert ("handoff", None) in steps and steps[-1] == ("completed", None)
    # Nobody approved the return in time: it went ahead as the default.
    assert steps.index(("approval", "start_return")) < steps.index(("approved", "start_return"))
    (asked,) = jobs.client.request("GET", "questions", params={"task": task["id"]})["results"]
    assert (asked["status"], asked["answer"]) == ("expired", "approve")
    assert "start_return" in asked["prompt"]
    assert agent_demo.ANSWER in output["text"]
