"""Failures inside Spark tasks that the driver turns into one line for the user.

Spark hands the driver a task's Python traceback as text inside a Java exception; the marker
lets the driver find the one line meant for the user in it.
"""

from __future__ import annotations

MARKER = "longmix-task-error: "


class TaskError(Exception):
    """A problem a task can state for the user: its cause, and the file and record."""

    def __init__(self, message: str):
        super().__init__(MARKER + message)
        self.message = message


def user_message(text: str) -> str | None:
    """The user's line from a failed job's error text, if a TaskError raised it."""
    at = text.find(MARKER)
    if at < 0:
        return None
    return text[at + len(MARKER) :].splitlines()[0].strip()
