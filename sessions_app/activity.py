"""The actions people took on a session and its tasks (cancel, pause,
resume, retry, answer, a question's expiry): the events whose data names who (`by`), for the
workspace's activity list. The page keeps it live from the socket's frames
that carry `by`."""

from live.models import Event

SHOWN = 100
NAME = 80  # a question's prompt, cut to this for the list


def entry(seq: int, kind: str, ts: str, data: dict) -> dict:
    """One line of the list, as the page draws it (from a stored event or a frame)."""
    on = kind.split(".")[0]
    on = on if on in ("task", "question") else "session"
    return {
        "seq": seq,
        "by": data.get("by"),
        "action": data.get("action") or kind,
        "on": on,
        "id": data.get("task_id") or data.get("id"),
        "name": (data.get("prompt") or "")[:NAME] if on == "question" else data.get("name", ""),
        "ts": ts,
    }


def of_session(session_id: int, limit: int = SHOWN) -> list[dict]:
    """The newest `limit` actions on the session, oldest first."""
    rows = (
        Event.objects.filter(session_id=session_id, data__has_key="by")
        .only("id", "kind", "ts", "data")
        .order_by("-id")[:limit]
    )
    return [entry(e.id, e.kind, e.ts.isoformat(), e.data) for e in reversed(rows)]
