"""Read one source file into datatrove `Document`s, and account for every record left out.

datatrove's own readers log a warning and drop a bad line, and abandon the rest of a file on
the first undecodable byte; the run report must count every skipped record by reason and file
(and strict mode must stop at the first one), so the decoding loop lives here, producing
datatrove's document model.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard
from datatrove.data import Document

from longmix.stages.logic.errors import TaskError
from longmix.stages.logic.sources import SourceSpec

Opener = Callable[[str], IO[bytes]]


@dataclass(frozen=True)
class Skip:
    """A record (or a whole file, `record` None) that yields no document, and why."""

    source: str
    file: str
    record: int | None
    reason: str
    detail: str = ""
    bad: bool = True
    records: int = 1  # a whole file left out counts its rows where they are known

    def describe(self, unit: str) -> str:
        where = f"{self.file}, {unit} {self.record}" if self.record is not None else self.file
        detail = f" ({self.detail})" if self.detail else ""
        return f"bad record in {where}: {self.reason}{detail}"


class BadRecordError(TaskError):
    """Raised in strict mode; its message is the one line the user sees."""


def record_unit(spec: SourceSpec) -> str:
    return {"jsonl": "line", "text": "file"}.get(spec.format, "row")


def dig(record: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(record, dict):
            return None
        record = record.get(key)
    return record


def valid_messages(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(
            isinstance(m, dict)
            and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str)
            for m in value
        )
    )


class RecordReader:
    """Turns records of one file into documents or skips, under one source spec."""

    def __init__(
        self, spec: SourceSpec, uri: str, relative: str, part: tuple[int, int] | None = None
    ):
        self.spec = spec
        self.uri = uri
        self.relative = relative
        self.part = part  # bytes [start, end) of a parquet file; None: all of it

    def skip(
        self, record: int | None, reason: str, detail: str = "", bad: bool = True, records: int = 1
    ) -> Skip:
        return Skip(self.spec.name, self.uri, record, reason, detail[:200], bad, records)

    def convert(self, record: dict[str, Any], index: int, text_bytes: bytes | None = None):
        """A `Document` for one record, or the `Skip` that says why there is none."""
        spec = self.spec
        if spec.kind == "chat":
            messages = dig(record, spec.messages_column)
            if messages is None:
                return self.skip(index, "missing_text", f"no {spec.messages_column!r}")
            if not valid_messages(messages):
                return self.skip(index, "invalid_messages", "expected a list of {role, content}")
            text = json.dumps(messages, ensure_ascii=False)
        else:
            if text_bytes is not None:
                try:
                    text = text_bytes.decode("utf-8")
                except UnicodeDecodeError as exc:
                    return self.skip(index, "undecodable_bytes", str(exc))
            else:
                text = dig(record, spec.text_column)
            if text is None:
                return self.skip(index, "missing_text", f"no {spec.text_column!r}")
            if not isinstance(text, str):
                return self.skip(index, "wrong_schema", f"{spec.text_column!r} is not a string")
            if not text.strip():
                return self.skip(index, "empty_text")
        domain = spec.domain
        if spec.domain_column:
            raw = dig(record, spec.domain_column)
            if raw not in spec.domain_map:
                return self.skip(index, "unmapped_domain", f"{raw}", bad=False)
            domain = spec.domain_map[raw]
        source_id = dig(record, spec.id_column) if spec.id_column else None
        return Document(
            text=text,
            id=f"{spec.name}/{self.relative}#{index}",
            metadata={
                "source": spec.name,
                "domain": domain,
                "kind": spec.kind,
                "file": self.uri,
                "record": index,
                "source_id": None if source_id is None else str(source_id),
                "group": self.optional_str(record, spec.group_column),
                "subgroup": self.optional_str(record, spec.subgroup_column),
                "member": self.optional_str(record, spec.member_column),
                "position": self.optional_int(record, spec.position_column),
            },
        )

    @staticmethod
    def optional_str(record: dict[str, Any], column: str | None) -> str | None:
        value = dig(record, column) if column else None
        return None if value is None else str(value)

    @staticmethod
    def optional_int(record: dict[str, Any], column: str | None) -> int | None:
        value = dig(record, column) if column else None
        try:
            return None if value is None else int(value)
        except (TypeError, ValueError):
            return None


def read_file(
    spec: SourceSpec,
    uri: str,
    relative: str,
    opener: Opener,
    part: tuple[int, int] | None = None,
) -> Iterator[Document | Skip]:
    """Every record of one file, as a document or a skip; file-level problems are one skip.
    With `part` (bytes [start, end) of a parquet file) the records of the row groups that
    start there, numbered as in the whole file; file-level skips come from the first part
    alone, so a file's pieces together give exactly what the whole file gives."""
    reader = RecordReader(spec, uri, relative, part)
    first = part is None or part[0] == 0
    try:
        with opener(uri) as raw:
            for item in READERS[spec.format](reader, raw):
                if first or not (isinstance(item, Skip) and item.record is None):
                    yield item
    except OSError as exc:
        if first:
            yield reader.skip(None, "unreadable_file", str(exc))


def read_parquet(reader: RecordReader, raw: pa.NativeFile) -> Iterator[Document | Skip]:
    spec = reader.spec
    if raw.size() == 0:
        yield reader.skip(None, "empty_file")
        return
    try:
        parquet = pq.ParquetFile(raw)
    except (pa.ArrowInvalid, OSError) as exc:
        yield reader.skip(None, "unreadable_file", str(exc))
        return
    names = set(parquet.schema_arrow.names)
    missing = [c for c in spec.required_columns() if c not in names]
    if missing:
        rows = max(1, parquet.metadata.num_rows)
        detail = missing_columns(missing, parquet.schema_arrow.names)
        yield reader.skip(None, "wrong_schema", detail, records=rows)
        return
    if parquet.metadata.num_rows == 0:
        yield reader.skip(None, "empty_file")
        return
    columns = sorted(set(spec.required_columns() + spec.optional_columns()) & names)
    if reader.part is None:
        yield from read_batches(reader, parquet.iter_batches(batch_size=512, columns=columns))
        return
    groups = row_groups_in(parquet.metadata, *reader.part)
    if groups:
        first = sum(parquet.metadata.row_group(g).num_rows for g in range(groups[0]))
        batches = parquet.iter_batches(batch_size=512, row_groups=groups, columns=columns)
        yield from read_batches(reader, batches, first)


def row_groups_in(metadata: pq.FileMetaData, start: int, end: int) -> list[int]:
    """The row groups whose first byte lies in [start, end): each row group of a file lies in
    exactly one of a set of ranges that cover the file, whatever the ranges."""
    return [g for g in range(metadata.num_row_groups) if start <= group_start(metadata, g) < end]


def group_start(metadata: pq.FileMetaData, group: int) -> int:
    """Where a row group's data begins: its first column chunk's first page."""
    column = metadata.row_group(group).column(0)
    offsets = [column.data_page_offset]
    if column.has_dictionary_page and column.dictionary_page_offset:
        offsets.append(column.dictionary_page_offset)
    return min(offsets)


def missing_columns(missing: list[str], present: list[str]) -> str:
    """What a file lacks, and the columns it has (a few), so a misnamed column shows."""
    shown = ", ".join(present[:12]) + (", ..." if len(present) > 12 else "")
    return f"missing column(s) {', '.join(missing)}; the file has: {shown or 'no columns'}"


def read_arrow(reader: RecordReader, raw: pa.NativeFile) -> Iterator[Document | Skip]:
    """An Arrow IPC file: the stream format Hugging Face `datasets` saves, or the file
    format."""
    if raw.size() == 0:
        yield reader.skip(None, "empty_file")
        return
    try:
        batches = pa.ipc.open_stream(raw)
    except pa.ArrowInvalid:
        raw.seek(0)
        try:
            found = pa.ipc.open_file(raw)
        except pa.ArrowInvalid as exc:
            yield reader.skip(None, "unreadable_file", str(exc))
            return
        batches = (found.get_batch(i) for i in range(found.num_record_batches))
        schema = found.schema
    else:
        schema = batches.schema
    missing = [c for c in reader.spec.required_columns() if c not in schema.names]
    if missing:
        yield reader.skip(None, "wrong_schema", missing_columns(missing, schema.names))
        return
    wanted = set(reader.spec.required_columns() + reader.spec.optional_columns())
    columns = [name for name in schema.names if name in wanted]
    yielded = False
    for item in read_batches(reader, (b.select(columns) for b in batches)):
        yielded = True
        yield item
    if not yielded:
        yield reader.skip(None, "empty_file")


def read_batches(
    reader: RecordReader, batches: Iterator[pa.RecordBatch], first: int = 0
) -> Iterator[Document | Skip]:
    """Rows of Arrow batches as documents, numbered from `first`; a top-level text column is
    decoded from its bytes here, so that a row of invalid UTF-8 is a counted skip."""
    spec = reader.spec
    binary_text = spec.kind == "text" and "." not in (spec.text_column or "")
    index = first
    for batch in batches:
        texts: list[bytes | None] | None = None
        if binary_text:
            column = batch.column(spec.text_column)
            if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                column = column.cast(pa.large_binary())
            if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
                texts = column.to_pylist()
                batch = batch.drop_columns([spec.text_column])
        for offset, record in enumerate(batch.to_pylist()):
            text_bytes = texts[offset] if texts is not None else None
            if texts is not None and text_bytes is None:
                yield reader.skip(index, "missing_text", f"null {spec.text_column!r}")
            else:
                yield reader.convert(record, index, text_bytes)
            index += 1


class TruncatedStream(Exception):
    """The compressed stream ended inside a frame."""


CHUNK = 1 << 20


def zstd_chunks(raw: IO[bytes]) -> Iterator[bytes]:
    """Decompressed bytes of every frame. zstandard's stream reader returns a truncated frame's
    prefix without complaint, so the end of each frame is checked here."""
    context = zstandard.ZstdDecompressor()
    frame = context.decompressobj()
    pending = False
    while chunk := raw.read(CHUNK):
        while chunk:
            out = frame.decompress(chunk)
            pending = True
            if out:
                yield out
            if frame.eof:
                chunk, frame, pending = frame.unused_data, context.decompressobj(), False
            else:
                chunk = b""
    if pending and not frame.eof:
        raise TruncatedStream("zstd frame ends early")


def gzip_chunks(raw: IO[bytes]) -> Iterator[bytes]:
    try:
        with gzip.GzipFile(fileobj=raw) as stream:
            while chunk := stream.read1(CHUNK):
                yield chunk
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise TruncatedStream(str(exc)) from None


def plain_chunks(raw: IO[bytes]) -> Iterator[bytes]:
    while chunk := raw.read(CHUNK):
        yield chunk


def chunks_for(uri: str, raw: IO[bytes]) -> Iterator[bytes]:
    if uri.endswith((".zst", ".zstd")):
        return zstd_chunks(raw)
    if uri.endswith(".gz"):
        return gzip_chunks(raw)
    return plain_chunks(raw)


def split_lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    rest = b""
    for chunk in chunks:
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def read_jsonl(reader: RecordReader, raw: IO[bytes]) -> Iterator[Document | Skip]:
    line_no = 0
    try:
        for line_no, line in enumerate(split_lines(chunks_for(reader.uri, raw)), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError as exc:
                yield reader.skip(line_no, "undecodable_bytes", str(exc))
                continue
            except json.JSONDecodeError as exc:
                yield reader.skip(line_no, "invalid_json", str(exc))
                continue
            if not isinstance(record, dict):
                yield reader.skip(line_no, "invalid_json", "the line is not a JSON object")
                continue
            yield reader.convert(record, line_no)
    except (TruncatedStream, zstandard.ZstdError) as exc:
        yield reader.skip(line_no + 1, "truncated_compression", str(exc))
        return
    if line_no == 0:
        yield reader.skip(None, "empty_file")


def read_whole_file(reader: RecordReader, raw: IO[bytes]) -> Iterator[Document | Skip]:
    """A whole file as one document (decompressed by its .gz / .zst suffix)."""
    try:
        data = b"".join(chunks_for(reader.uri, raw))
    except (TruncatedStream, zstandard.ZstdError) as exc:
        yield reader.skip(0, "truncated_compression", str(exc))
        return
    if not data:
        yield reader.skip(None, "empty_file")
        return
    yield reader.convert({}, 0, data)


READERS: dict[str, Callable[[RecordReader, Any], Iterator[Document | Skip]]] = {
    "jsonl": read_jsonl,
    "parquet": read_parquet,
    "arrow": read_arrow,
    "text": read_whole_file,
}
# Files a folder holds beside the data that a format's reader must not be given.
DATA_SUFFIXES = {"arrow": (".arrow",)}
MAGIC = [(b"PAR1", "parquet"), (b"ARROW1", "arrow"), (b"\xff\xff\xff\xff", "arrow")]


def guess_format(head: bytes) -> str:
    """The format a file's first bytes (decompressed) suggest."""
    for magic, name in MAGIC:
        if head.startswith(magic):
            return name
    if head.lstrip().startswith(b"{"):
        return "jsonl"
    return "text"
