"""Every error longmix states for the user, under one root: the CLI prints it as one line.

A task's error reaches the driver only as text (Spark hands over the Python traceback inside
a Java exception), so a TaskError carries a marker that lets the driver find its line there
(`task_message`); `pipeline.spark.as_longmix_error` is the one place that does.
"""

from __future__ import annotations

MARKER = "longmix-task-error: "


class LongmixError(Exception):
    """A problem with the input, the config or the environment, stated for the user."""

    def user_line(self) -> str:
        return str(self)


class TaskError(LongmixError):
    """A problem a task can state for the user: its cause, and the file and record."""

    def __init__(self, message: str):
        super().__init__(MARKER + message)
        self.message = message

    def user_line(self) -> str:
        return self.message


def task_message(text: str) -> str | None:
    """The user's line from a failed job's error text, if a TaskError raised it."""
    at = text.find(MARKER)
    if at < 0:
        return None
    return text[at + len(MARKER) :].splitlines()[0].strip()
