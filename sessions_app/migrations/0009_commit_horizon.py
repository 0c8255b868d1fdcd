"""The event log's ordering on PostgreSQL, without a lock that spans sessions
(see live/events.py and docs/ARCHITECTURE.md, "Order without a global lock").

Two functions: `switchboard_enter(session_key)` takes the session's event
lock and, once a transaction, marks the transaction in flight with a shared
advisory lock whose key is a bound below every event id it will take;
`switchboard_horizon()` answers the newest id below which every event is
committed or never will be, from the id sequence and those marks. Nobody
waits for anybody in the second: a reader reads, no writer is held back.
"""

from django.db import migrations

# A session's event lock: pg_advisory_xact_lock(SESSION_LOCK_CLASS, id).
SESSION_LOCK_CLASS = 0x5B0A
# The marks of transactions in flight: one int8 advisory key each, this base
# plus the bound (pg_locks shows it as classid, the high half, and objid).
FLIGHT_BASE = 0x5B0B << 40


def functions(sequence: str) -> str:
    classes = (FLIGHT_BASE >> 32, (FLIGHT_BASE >> 32) + 0xFF)
    return f"""
CREATE OR REPLACE FUNCTION switchboard_enter(session_key integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    low bigint;
BEGIN
    IF session_key IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock({SESSION_LOCK_CLASS}, session_key);
    END IF;
    -- Once a transaction (the setting is the transaction's own, and goes
    -- with it, committed or rolled back): every id this transaction takes
    -- from now on is bigger than the sequence's value read here.
    IF COALESCE(current_setting('switchboard.in_flight', true), '') = '' THEN
        SELECT last_value - (NOT is_called)::int INTO low FROM {sequence};
        PERFORM pg_advisory_xact_lock_shared({FLIGHT_BASE} + low);
        PERFORM set_config('switchboard.in_flight', low::text, true);
    END IF;
END $$;

DROP FUNCTION IF EXISTS switchboard_horizon();
CREATE FUNCTION switchboard_horizon(OUT top bigint, OUT horizon bigint)
LANGUAGE plpgsql AS $$
DECLARE
    low bigint;
BEGIN
    -- The sequence first, the marks second: a writer not yet marked when
    -- the marks are read takes its ids after `top` was read, so above it.
    SELECT last_value - (NOT is_called)::int INTO top FROM {sequence};
    SELECT min(((l.classid::bigint << 32) | l.objid::bigint) - {FLIGHT_BASE}) INTO low
      FROM pg_locks l
     WHERE l.locktype = 'advisory' AND l.objsubid = 1
       AND l.classid::bigint BETWEEN {classes[0]} AND {classes[1]}
       -- The reader's own writes in flight, if any, are visible to it.
       AND l.pid <> pg_backend_pid()
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database());
    horizon := LEAST(top, COALESCE(low, top));
END $$;
"""


def create(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return  # SQLite has one writer at a time: ids follow commit order
    Event = apps.get_model("sessions_app", "Event")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [Event._meta.db_table])
        sequence = cursor.fetchone()[0]
        cursor.execute(functions(sequence))


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "DROP FUNCTION IF EXISTS switchboard_enter(integer);"
            " DROP FUNCTION IF EXISTS switchboard_horizon();"
        )


class Migration(migrations.Migration):
    dependencies = [("sessions_app", "0008_session_failed_tasks")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
