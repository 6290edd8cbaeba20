"""`longmix demo`: a small corpus in the published layouts, built from real text that every
machine with longmix installed has (installed packages' source files as Stack repositories,
package descriptions and standard-library docstrings as prose), then the pipeline on it."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import sysconfig
from pathlib import Path

from longmix.pipeline import corpus

STACK_PACKAGES = ["yaml", "rich", "datatrove", "streaming", "zstandard", "pydantic", "tqdm"]
STDLIB_BOOKS = ["json", "email", "asyncio", "concurrent", "importlib", "xml", "http", "logging"]
MATH_MODULES = ["statistics", "fractions", "decimal", "random", "colorsys", "cmath"]
MAX_REPO_BYTES = 1_500_000


def package_files(package: str) -> list[tuple[str, str]]:
    """(path, source) of a package's .py files, up to MAX_REPO_BYTES."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(next(iter(spec.submodule_search_locations)))
    files, total = [], 0
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        if total + len(text) > MAX_REPO_BYTES:
            break
        files.append((f"{package}/{path.relative_to(root).as_posix()}", text))
        total += len(text)
    return files


def docstrings(path: Path) -> str:
    """The module's docstrings (module, classes, functions) as one prose text."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError):
        return ""
    nodes = [tree] + [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)]
    parts = [ast.get_docstring(n) for n in nodes]
    return "\n\n".join(p for p in parts if p)


def stdlib_texts(names: list[str]) -> dict[str, list[tuple[str, str]]]:
    """Per stdlib package or module: (module name, docstring text) chapters."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out: dict[str, list[tuple[str, str]]] = {}
    for name in names:
        paths = (
            sorted((root / name).rglob("*.py")) if (root / name).is_dir() else [root / f"{name}.py"]
        )
        chapters = [(p.stem, docstrings(p)) for p in paths if p.exists()]
        out[name] = [(title, text) for title, text in chapters if len(text) > 200]
    return out


def descriptions() -> list[str]:
    """Long descriptions of installed distributions: real prose, web-page sized."""
    texts = []
    for dist in sorted(importlib.metadata.distributions(), key=lambda d: d.metadata["Name"] or ""):
        body = dist.metadata.get_payload() or ""
        if len(body) > 500:
            texts.append(body)
    return texts


def build_corpus(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    repos = [
        (f"pypi/{package}", path, text)
        for package in STACK_PACKAGES
        for path, text in package_files(package)
    ]
    corpus.write_stack(root / "the-stack-dedup", repos, shards=4)

    prose = descriptions()
    books = stdlib_texts(STDLIB_BOOKS)
    book_texts = ["\n\n".join(text for _, text in chapters) for chapters in books.values()]
    records = [corpus.slimpajama_record(t, "RedPajamaBook") for t in book_texts]
    records += [corpus.slimpajama_record(t, "RedPajamaArXiv") for t in prose[0::6]]
    records += [corpus.slimpajama_record(t, "RedPajamaStackExchange") for t in prose[1::6]]
    records += [corpus.slimpajama_record(t, "RedPajamaCommonCrawl") for t in prose[2::12]]
    # Two defects as real dumps have them, to show how skipped records are reported.
    records += [b'{"text": "a line cut short', corpus.slimpajama_record("", "RedPajamaBook")]
    corpus.write_jsonl(root / "SlimPajama-627B/train/chunk1/example_train_0.jsonl.zst", records)

    web = [corpus.fineweb_row(t, i) for i, t in enumerate(prose[3::6])]
    corpus.write_parquet(
        root / "fineweb/data/CC-MAIN-2023-50/000_00000.parquet", web, corpus.FINEWEB_SCHEMA
    )
    edu = [corpus.fineweb_row(t, i, edu=True) for i, t in enumerate(prose[4::6])]
    corpus.write_parquet(
        root / "fineweb-edu/data/CC-MAIN-2023-50/000_00000.parquet", edu, corpus.FINEWEB_EDU_SCHEMA
    )
    chapters = [
        {"subject": "python-stdlib", "book": book, "chapter": k, "title": title, "text": text}
        for book, items in books.items()
        for k, (title, text) in enumerate(items)
    ]
    corpus.write_parquet(
        root / "TextbookChapters/data/train-00000-of-00001.parquet",
        chapters,
        corpus.TEXTBOOK_SCHEMA,
    )
    wiki_chapters = [text for items in books.values() for _, text in items]
    corpus.write_jsonl(
        root / "dolma-wiki/wiki-0000.json.gz",
        [corpus.wikipedia_record(t, i) for i, t in enumerate(wiki_chapters)],
    )
    math = stdlib_texts(MATH_MODULES)
    math_rows = [
        {
            "url": f"https://docs.python.org/3/library/{name}.html",
            "text": text,
            "date": "2023-01-01",
            "metadata": "{}",
        }
        for name, items in math.items()
        for _, text in items
    ]
    corpus.write_parquet(
        root / "open-web-math/data/train-00000-of-00001.parquet",
        math_rows,
        corpus.OPENWEBMATH_SCHEMA,
    )
    pairs = [
        (f"What does the Python module `{title}` do?", text)
        for items in books.values()
        for title, text in items
    ]
    corpus.write_jsonl(
        root / "tulu-v2-sft-mixture/data/tulu_v2.jsonl",
        [
            {"dataset": "demo", "id": f"demo_{i}", "messages": corpus.chat(q, a)}
            for i, (q, a) in enumerate(pairs)
        ],
    )
    corpus.write_parquet(
        root / "ultrachat_200k/data/train_sft-00000-of-00001.parquet",
        [
            {"prompt": q, "prompt_id": corpus.sha1(q), "messages": corpus.chat(q, a)}
            for q, a in pairs
        ],
        corpus.ULTRACHAT_SCHEMA,
    )
