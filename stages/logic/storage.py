"""Local and S3 paths behind one pyarrow file system, with glob expansion.

Credentials come only from the standard AWS chain (environment, profile, instance role) on
whichever process touches S3; what travels to Spark tasks is `StorageOptions`, which holds no
secret. The endpoint override serves S3-compatible stores (MinIO, moto, Ceph).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import uuid
from dataclasses import dataclass, replace
from datetime import UTC
from typing import IO
from urllib.parse import urlparse

import pyarrow.fs as pafs

from longmix.stages.logic.redaction import scrub

GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class StorageOptions:
    s3_endpoint_url: str | None = None
    s3_region: str | None = None


@dataclass(frozen=True)
class FileEntry:
    """A discovered input file; `relative` is its path under the pattern's fixed prefix, so
    the same layout gives the same ids on local disk and on S3."""

    uri: str
    relative: str
    size: int
    modified: str = ""  # UTC, ISO 8601: with the size, how the data card identifies the file
    # What changes when the file is rewritten: the modification time in nanoseconds locally,
    # the ETag on S3 (where a rewrite within the same second keeps LastModified).
    stamp: str = ""


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


# Connection resets, 503 SlowDown and short outages of the endpoint are retried with
# exponential backoff by every S3 client longmix makes, streaming's (which reads these
# variables) included. boto3's backoff starts at 50 ms and doubles up to 20 s: 10 attempts
# (about 13 s of waiting on average) lost a 10-second outage; 15 wait about a minute.
# pyarrow's (the AWS C++ SDK's) starts at 25 ms and doubles: 12 attempts wait ~50 s.
S3_ATTEMPTS = 15
ARROW_S3_ATTEMPTS = 12
S3_RETRY_ENVIRONMENT = {"AWS_RETRY_MODE": "standard", "AWS_MAX_ATTEMPTS": str(S3_ATTEMPTS)}


def retry_s3() -> None:
    for name, value in S3_RETRY_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


def s3_filesystem(options: StorageOptions) -> pafs.S3FileSystem:
    endpoint = endpoint_url(options)
    kwargs: dict[str, object] = {
        "region": region_of(options),
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=ARROW_S3_ATTEMPTS),
    }
    if endpoint:
        parsed = urlparse(endpoint)
        kwargs["endpoint_override"] = parsed.netloc or parsed.path
        kwargs["scheme"] = parsed.scheme or "https"
    return pafs.S3FileSystem(**kwargs)


def resolve(uri: str, options: StorageOptions) -> tuple[pafs.FileSystem, str]:
    """The file system for `uri` and the path to hand it."""
    if is_s3(uri):
        return s3_filesystem(options), uri[len("s3://") :]
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def open_input(uri: str, options: StorageOptions) -> IO[bytes]:
    fs, path = resolve(uri, options)
    return fs.open_input_file(path)


def glob_regex(pattern: str) -> re.Pattern[str]:
    """`*` and `?` stay within one path component; `**/` spans any number of them."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape("["))
                i += 1
            else:
                body = pattern[i + 1 : end]
                out.append("[^" + body[1:] + "]" if body.startswith("!") else "[" + body + "]")
                i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def split_pattern(path: str) -> tuple[str, str | None]:
    """The fixed directory prefix of a glob and the glob below it (None: no glob)."""
    parts = path.split("/")
    for index, part in enumerate(parts):
        if GLOB_CHARS.search(part):
            return "/".join(parts[:index]), "/".join(parts[index:])
    return path, None


def expand(pattern: str, options: StorageOptions) -> list[FileEntry]:
    """Every file a path, directory or glob names, sorted by URI. A matched directory (a
    parquet dataset Spark wrote, say) stands for the files inside it, less the `_SUCCESS`,
    `.crc` and other hidden files such writers leave beside the data."""
    fs, path = resolve(pattern, options)
    prefix = "s3://" if is_s3(pattern) else ""
    base, glob = split_pattern(path)
    if glob is None:
        info = fs.get_file_info(base)
        if info.type == pafs.FileType.File:
            name = base.rsplit("/", 1)[-1]
            return stamped([file_entry(prefix + base, name, info)], options)
        if info.type == pafs.FileType.NotFound:
            return []
    matcher = glob_regex(glob or "")
    selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
    infos = fs.get_file_info(selector)
    relative = {info.path: info.path[len(base) :].lstrip("/") for info in infos}
    folders = [""] if glob is None else []
    folders += [
        relative[info.path] + "/"
        for info in infos
        if info.type == pafs.FileType.Directory and matcher.match(relative[info.path])
    ]
    entries = []
    for info in infos:
        name = relative[info.path]
        if info.type != pafs.FileType.File:
            continue
        in_folder = any(name.startswith(f) for f in folders) and not hidden(info.base_name)
        if (glob is not None and matcher.match(name)) or in_folder:
            entries.append(file_entry(prefix + info.path, name, info))
    return stamped(sorted(entries, key=lambda e: e.uri), options)


def file_entry(uri: str, relative: str, info: pafs.FileInfo) -> FileEntry:
    stamp = "" if is_s3(uri) else str(info.mtime_ns)
    return FileEntry(uri, relative, info.size or 0, modified(info), stamp)


def stamped(entries: list[FileEntry], options: StorageOptions) -> list[FileEntry]:
    """S3 entries with their ETags as `stamp`, from one listing of their common prefix
    (pyarrow's file information carries no ETag); local entries as they are."""
    if not entries or not is_s3(entries[0].uri):
        return entries
    # A character prefix on purpose: S3 lists keys by one.
    tags = s3_etags(os.path.commonprefix([e.uri for e in entries]), options)  # noqa: RUF071
    return [replace(e, stamp=tags.get(e.uri, "")) for e in entries]


def s3_etags(prefix: str, options: StorageOptions) -> dict[str, str]:
    """uri -> ETag of every object whose URI starts with `prefix`."""
    bucket, key = bucket_and_key(prefix)
    pages = s3_client(options).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key)
    return {
        f"s3://{bucket}/{item['Key']}": item["ETag"]
        for page in pages
        for item in page.get("Contents", [])
    }


def file_version(uri: str, options: StorageOptions) -> tuple[int, str] | None:
    """(size, stamp) of the file at `uri` now, as `expand` records them; None if it is gone."""
    if is_s3(uri):
        bucket, key = bucket_and_key(uri)
        client = s3_client(options)
        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return head["ContentLength"], head["ETag"]
    try:
        found = os.stat(uri)
    except FileNotFoundError:
        return None
    return found.st_size, str(found.st_mtime_ns)


def modified(info: pafs.FileInfo) -> str:
    mtime = info.mtime
    if mtime is None:
        return ""
    if mtime.tzinfo is None:
        mtime = mtime.replace(tzinfo=UTC)
    return mtime.astimezone(UTC).isoformat(timespec="seconds")


def hidden(name: str) -> bool:
    return name.startswith(("_", "."))


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def write_text(uri: str, text: str, options: StorageOptions) -> None:
    """Every text file longmix writes goes through here, secrets scrubbed. Whole or not at
    all: a full disk or a kill mid-write never leaves half a report for a rerun to read."""
    data = scrub(text).encode("utf-8")
    if is_s3(uri):
        fs, path = resolve(uri, options)
        with fs.open_output_stream(path) as out:
            out.write(data)
        return
    temporary = staged(uri, data)
    os.replace(temporary, uri)


def staged(uri: str, data: bytes) -> str:
    """`data` in a new file beside `uri` (removed again if it cannot be written whole)."""
    os.makedirs(os.path.dirname(os.path.abspath(uri)), exist_ok=True)
    temporary = f"{uri}.{uuid.uuid4().hex}.tmp"
    try:
        with open(temporary, "wb") as out:
            out.write(data)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return temporary


def read_text(uri: str, options: StorageOptions) -> str:
    with open_input(uri, options) as stream:
        return stream.read().decode("utf-8")


def endpoint_url(options: StorageOptions) -> str | None:
    return (
        options.s3_endpoint_url
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
    )


def point_streaming_at(options: StorageOptions) -> None:
    """streaming's S3 uploader and downloader take their endpoint (and retries) from the
    environment."""
    retry_s3()
    if endpoint_url(options):
        os.environ["S3_ENDPOINT_URL"] = endpoint_url(options)


def region_of(options: StorageOptions) -> str:
    return (
        options.s3_region
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or "us-east-1"
    )


def s3_client(options: StorageOptions):
    import boto3

    retry_s3()
    return boto3.client("s3", endpoint_url=endpoint_url(options), region_name=region_of(options))


def upload_folder(local: str, uri: str, options: StorageOptions) -> None:
    """The files of the flat folder `local` to `uri`, one at a time and `index.json` last
    (a reader that finds the index finds its shards), each retried as `s3_client` retries."""
    from boto3.s3.transfer import TransferConfig

    client = s3_client(options)
    # Two parts of a multipart upload at a time: their retries share the client's quota.
    transfer = TransferConfig(max_concurrency=2)
    bucket, key = bucket_and_key(uri)
    for name in sorted(os.listdir(local), key=lambda n: (n == "index.json", n)):
        client.upload_file(os.path.join(local, name), bucket, f"{key}/{name}", Config=transfer)


def bucket_and_key(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def claim(uri: str, text: str, options: StorageOptions) -> bool:
    """Create `uri` holding `text` only if it does not exist yet; True for the one caller
    that created it. Atomic: a hard link locally, a conditional PUT (If-None-Match) on S3."""
    if is_s3(uri):
        bucket, key = bucket_and_key(uri)
        client = s3_client(options)
        try:
            client.put_object(Bucket=bucket, Key=key, Body=text.encode(), IfNoneMatch="*")
        except client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
                return False
            raise
        return True
    temporary = staged(uri, text.encode())
    try:
        os.link(temporary, uri)  # atomic, and the record is complete when it appears
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        return create_exclusive(uri, text)  # a file system without hard links
    finally:
        os.unlink(temporary)
    return True


def create_exclusive(uri: str, text: str) -> bool:
    try:
        handle = os.open(uri, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(handle, "w") as out:
        out.write(text)
    return True


def exists(uri: str, options: StorageOptions) -> bool:
    fs, path = resolve(uri, options)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def list_files(uri: str, options: StorageOptions) -> list[str]:
    """Every file under the folder `uri` (recursively), as URIs; none if it is missing."""
    fs, path = resolve(uri, options)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return []
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    prefix = "s3://" if is_s3(uri) else ""
    return sorted(prefix + i.path for i in infos if i.type == pafs.FileType.File)


def delete_file(uri: str, options: StorageOptions) -> None:
    fs, path = resolve(uri, options)
    if fs.get_file_info(path).type == pafs.FileType.File:
        fs.delete_file(path)


def delete_if_empty(uri: str, options: StorageOptions) -> None:
    """Remove a folder longmix emptied (S3 has no folders to remove)."""
    if not is_s3(uri):
        with contextlib.suppress(OSError):
            os.rmdir(uri)


def delete_folder(uri: str, options: StorageOptions) -> None:
    fs, path = resolve(uri, options)
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir(path)
