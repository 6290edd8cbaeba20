"""One run per output at a time: `_longmix.lock`, held for the whole run.

Two runs into one output interleave their shards and commits; the second must be refused at
once, naming the holder. The lock is created atomically (a hard link locally, a conditional
PUT on S3) and kept fresh by a heartbeat thread. A lock whose heartbeat stopped (its run was
killed) is stale after `STALE_SECONDS`, at once if its process is gone from this host, and is
taken over: locally under a short-lived takeover mutex that re-checks staleness, on S3 by a
PUT conditional on the stale lock's ETag, so two runs that find one stale lock cannot both
take it.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from longmix.stages.logic.errors import LongmixError
from longmix.stages.logic.storage import (
    StorageOptions,
    bucket_and_key,
    claim,
    is_s3,
    join,
    s3_client,
)

LOCK = "_longmix.lock"
HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 60.0


def owner() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "token": uuid.uuid4().hex,
    }


def gone(holder: dict[str, Any]) -> bool:
    """A holder on this host whose process no longer exists (killed, so no heartbeat will
    come): its lock is stale at once, with no wait for the heartbeat to age."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def describe(holder: dict[str, Any]) -> str:
    return f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}"


class LocalLock:
    def __init__(self, folder: str, stale_seconds: float):
        self.path = os.path.join(folder, LOCK)
        self.stale_seconds = stale_seconds
        self.me = owner()

    def acquire(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        if self.create():
            return
        holder, age = self.read()
        stale = age is not None and (age > self.stale_seconds or gone(holder))
        if stale and self.take_over():
            return
        raise LongmixError(
            f"{os.path.dirname(self.path)} is in use by another longmix run "
            f"({describe(holder)}); wait for it, or remove {self.path} if that run is gone"
        )

    def create(self, path: str | None = None) -> bool:
        return claim(path or self.path, json.dumps(self.me), StorageOptions())

    def read(self) -> tuple[dict[str, Any], float | None]:
        """The holder and the seconds since its last heartbeat (None: the lock vanished)."""
        try:
            with open(self.path) as stream:
                text = stream.read()
            age = time.time() - os.stat(self.path).st_mtime
        except FileNotFoundError:
            return {}, None
        try:
            return json.loads(text), age
        except json.JSONDecodeError:  # a holder killed while writing it
            return {}, age

    def take_over(self) -> bool:
        """Replace a stale lock; only one of several runs that found it stale succeeds."""
        mutex = self.path + ".takeover"
        try:
            if time.time() - os.stat(mutex).st_mtime > self.stale_seconds:
                os.unlink(mutex)  # left by a run killed while taking over
        except FileNotFoundError:
            pass
        if not self.create(mutex):
            return False
        try:
            holder, age = self.read()
            if age is not None and age <= self.stale_seconds and not gone(holder):
                return False  # another run took it over and is alive
            fresh = f"{self.path}.{self.me['token']}"
            with open(fresh, "w") as out:
                json.dump(self.me, out)
            os.replace(fresh, self.path)
            return True
        finally:
            os.unlink(mutex)

    def mine(self) -> bool:
        holder, _ = self.read()
        return holder.get("token") == self.me["token"]

    def beat(self) -> None:
        if self.mine():
            os.utime(self.path)

    def release(self) -> None:
        if self.mine():
            os.unlink(self.path)


class S3Lock:
    def __init__(self, folder: str, storage: StorageOptions, stale_seconds: float):
        self.uri = join(folder, LOCK)
        self.bucket, self.key = bucket_and_key(self.uri)
        self.client = s3_client(storage)
        self.stale_seconds = stale_seconds
        self.me = owner()
        self.etag: str | None = None

    def put(self, **condition: str) -> bool:
        body = json.dumps(self.me).encode()
        try:
            found = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=body, **condition)
        except self.client.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                return False
            raise
        self.etag = found["ETag"]
        return True

    def acquire(self) -> None:
        if self.put(IfNoneMatch="*"):
            return
        try:
            found = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except self.client.exceptions.NoSuchKey:
            if self.put(IfNoneMatch="*"):
                return
            raise LongmixError(f"{self.uri}: another run took the lock just now") from None
        holder = json.loads(found["Body"].read() or b"{}")
        age = time.time() - found["LastModified"].timestamp()
        stale = age > self.stale_seconds or gone(holder)
        if stale and self.put(IfMatch=found["ETag"]):
            return
        raise LongmixError(
            f"{self.uri.rsplit('/', 1)[0]} is in use by another longmix run ({describe(holder)}); "
            f"wait for it, or delete {self.uri} if that run is gone"
        )

    def beat(self) -> None:
        if self.etag:
            self.put(IfMatch=self.etag)

    def release(self) -> None:
        if not self.etag:
            return
        head = self.client.head_object(Bucket=self.bucket, Key=self.key)
        if head["ETag"] == self.etag:
            self.client.delete_object(Bucket=self.bucket, Key=self.key)


@contextmanager
def run_lock(
    folder: str, storage: StorageOptions, stale_seconds: float = STALE_SECONDS
) -> Iterator[None]:
    """Hold the output's lock for the block's duration, with a heartbeat."""
    lock = (
        S3Lock(folder, storage, stale_seconds)
        if is_s3(folder)
        else LocalLock(folder, stale_seconds)
    )
    lock.acquire()
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                lock.beat()
            except Exception:  # a missed beat only ages the lock; the next one may land
                continue

    beater = threading.Thread(target=heartbeat, name="longmix-lock-heartbeat", daemon=True)
    beater.start()
    try:
        yield
    finally:
        stop.set()
        beater.join()
        lock.release()
