"""Users' regular expressions, compiled by RE2 (google-re2), never by `re`.

Python's `re` backtracks: `(a+)+$` against a long line of a's ending in b
would hold the ingest transaction for ever. RE2 matches in time linear in
the line and refuses what it cannot do so (backreferences, lookaround).
"""

import re2

OPTIONS = re2.Options()
OPTIONS.log_errors = False  # a refused pattern is reported to whoever wrote it


def compile_pattern(pattern: str):
    """The RE2 program of `pattern`; ValueError saying what is wrong."""
    try:
        return re2.compile(pattern, options=OPTIONS)
    except re2.error as error:
        reason = error.args[0] if error.args else "refused"
        if isinstance(reason, bytes):
            reason = reason.decode(errors="replace")
        raise ValueError(str(reason)) from None
