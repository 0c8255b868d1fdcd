"""A schema-driven fuzzer against a real daphne: every operation of
/api/v1/openapi.json, with a worker's token and with no identity, valid and
invalid inputs (Schemathesis, bounded). It fails on any 5xx, an answer that
does not match the schema, an undocumented status or content type, invalid
input that is accepted, and a later read that breaks."""

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from project.api import api
from sessions_app import questions, services

pytestmark = [pytest.mark.timeout(600), pytest.mark.django_db(transaction=True)]

# Examples per operation and identity: about 1,400 requests in all by default.
EXAMPLES = int(os.environ.get("SWITCHBOARD_FUZZ_EXAMPLES", "25"))
SEEDS: dict[str, int] = {}


# The schema as the server describes it; requests go to a real daphne (`live`).
schema = schemathesis.openapi.from_dict(api.get_openapi_schema())


@schema.hook
def map_path_parameters(ctx, path_parameters):
    # Two drawn ids in three name real objects, so writes go past the 404.
    if not path_parameters:
        return path_parameters
    for name in ("session_id", "task_id", "question_id"):
        value = path_parameters.get(name)
        if isinstance(value, int) and value % 3 and name in SEEDS:
            path_parameters[name] = SEEDS[name]
    return path_parameters


@schema.hook
def map_query(ctx, query):
    # A question's wait holds the answer up to 60 s: a short one, so a run stays short.
    if query and isinstance(query.get("wait"), (int, float)) and 0 <= query["wait"] <= 60:
        query["wait"] = min(query["wait"], 0.5)
    return query


@pytest.fixture
def seeded(worker_user):
    session, _ = services.create_session(name="fuzzed", owner=worker_user)
    task, _ = services.create_task(session.pk, name="step")
    question, _ = questions.ask(task.pk, prompt="Go on?", choices=["yes", "no"], timeout=3600)
    SEEDS.update(session_id=session.pk, task_id=task.pk, question_id=question.pk)
    return session


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


def fuzz(case, headers, live, worker_token, session) -> None:
    case.call_and_validate(
        base_url=live.url,
        headers=headers,
        timeout=30,
        # Valid input may still name an object that is not there (404).
        excluded_checks=[positive_data_acceptance],
    )
    # Whatever was stored, the seeded session still reads back whole.
    client = live.client(worker_token)
    for path in (
        f"sessions/{session.pk}",
        f"sessions/{session.pk}/logs?limit=10000",
        f"events?channel=session:{session.pk}",
        f"tasks/{SEEDS['task_id']}/output",
        f"questions/{SEEDS['question_id']}",
        "questions?status=open",
    ):
        client.request("GET", path)


@schema.parametrize()
@FUZZ
def test_no_input_from_a_worker_breaks_the_api(case, seeded, worker_token, live):
    fuzz(case, {"Authorization": f"Bearer {worker_token}"}, live, worker_token, seeded)


@schema.parametrize()
@FUZZ
def test_no_input_without_identity_breaks_the_api(case, seeded, worker_token, live):
    fuzz(case, {}, live, worker_token, seeded)
