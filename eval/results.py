"""One results schema for every benchmark harness (GenEval, T2I-CompBench, WISE): the run directory's files, the
resumable + sharded evaluation loop that fills them, and the summary document rendered into tables.

A run directory holds

```
results.jsonl               one JSON record per image, sorted by key (the benchmark defines the record's fields)
results.digests.json        {key: sha256 of the image file} for every record: what each record was scored on
results.part<NNN>.jsonl     while running: process NNN's new records (each with its digest under "_sha256")
summary.json                the summary document (schema, version, name, git, environment, config, seeds, scores)
summary.md / summary.tex    tables rendered from summary.json, and a bar chart
```

Resume is keyed by the image's **content** (sha256 of the file bytes), not only its path: an image replaced on disk
after it was scored is scored again, and the merge keeps, per key, the record whose digest is the file's current one.
Sharding is round-robin over the full item list (an image's process never depends on what is done); every process
appends whole batches atomically to its own part file and the main process merges all of them (lm-evaluation-harness
conventions: a schema and a version, results carry config, seeds and git hash; tables render from the saved JSON).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from tqdm import tqdm

from common.env import environment, git_hash
from common.io import atomic_write_text
from common.io import (
    file_sha256 as file_digest,  # the identity of the image a record was scored on
)

RESULTS = "results.jsonl"
DIGESTS = "results.digests.json"
DIGEST_FIELD = "_sha256"  # the digest's field in part-file records; moved to DIGESTS when merging
_DIGESTS_SCHEMA = "imagecot.results.digests"


# ---------------------------------------------------------------------------------------------------- items, shards
@dataclass(frozen=True)
class Item:
    """One image to score: ``key`` (stable across machines, e.g. ``color/samples/x_000001.png``), its file and the
    benchmark's own data for it (prompt, category, ...)."""

    key: str
    path: Path
    data: Any = None


def shard(items: Sequence[Any], num_processes: int, process_index: int) -> list[Any]:
    """The items process ``process_index`` of ``num_processes`` evaluates: round-robin, so shards differ by ≤ 1."""
    if not 0 <= process_index < num_processes:
        raise ValueError(f"process_index {process_index} out of range for {num_processes} processes")
    return list(items[process_index::num_processes])


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of a JSONL file; errors name file and line."""
    records = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{lineno}: invalid JSON ({err.msg})") from err
    return records


# ---------------------------------------------------------------------------------------------------- result store
class ResultStore:
    """``results.jsonl`` + ``results.digests.json`` + part files of one run directory.

    ``key_of`` maps a record to its item key (default: the record's ``"key"`` field; GenEval derives it from the
    official ``filename``). Records are stored as the benchmark wrote them; digests live beside them.
    """

    def __init__(self, out_dir: str | os.PathLike, key_of: Callable[[Mapping[str, Any]], str] | None = None):
        self.out_dir = Path(out_dir)
        self.key_of = key_of or (lambda record: record["key"])

    def part_path(self, process_index: int) -> Path:
        return self.out_dir / f"results.part{process_index:03d}.jsonl"

    def part_files(self) -> list[Path]:
        return sorted(self.out_dir.glob("results.part*.jsonl"))

    def _merged_digests(self) -> dict[str, str]:
        path = self.out_dir / DIGESTS
        if not path.is_file():
            return {}
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("schema") != _DIGESTS_SCHEMA:
            raise ValueError(f"{path}: field 'schema' = {doc.get('schema')!r}, expected {_DIGESTS_SCHEMA!r}")
        return dict(doc["digests"])

    def entries(self) -> list[tuple[str, str | None, dict[str, Any]]]:
        """Every stored ``(key, digest or None, record)``: merged results first, then part files in order."""
        out = []
        results = self.out_dir / RESULTS
        if results.is_file():
            digests = self._merged_digests()
            for rec in read_jsonl(results):
                key = self.key_of(rec)
                out.append((key, digests.get(key), rec))
        for path in self.part_files():
            for rec in read_jsonl(path):
                rec = dict(rec)
                digest = rec.pop(DIGEST_FIELD, None)
                out.append((self.key_of(rec), digest, rec))
        return out

    def keys(self) -> set[str]:
        """Keys with any stored record (whatever image it was scored on)."""
        return {key for key, _, _ in self.entries()}

    def done(self, digests: Mapping[str, str]) -> set[str]:
        """Keys whose stored record was scored on the image that is on disk now (``digests``: key -> sha256)."""
        return {key for key, digest, _ in self.entries() if digest is not None and digests.get(key) == digest}

    def append(self, process_index: int, records: Iterable[Mapping[str, Any]], digests: Sequence[str]) -> None:
        """Append whole records to this process's part file, atomically (a crash never leaves half a line)."""
        path = self.part_path(process_index)
        lines = [json.dumps({**rec, DIGEST_FIELD: digest}) + "\n" for rec, digest in zip(records, digests, strict=True)]
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        atomic_write_text(path, old + "".join(lines))

    def merge(
        self, digests: Mapping[str, str] | None = None, keys: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        """Fold every part file into ``results.jsonl`` (one record per key, sorted by key) and remove the parts.

        With ``digests`` (key -> current sha256 of every item of this evaluation), a key keeps the last stored record
        scored on its current image, and keys outside ``digests`` are dropped. Without it (no image list at hand),
        the first record stored per key is kept, restricted to ``keys`` when given. Part files are removed last, so
        a crash mid-merge loses nothing.
        """
        wanted = None if keys is None else set(keys)
        chosen: dict[str, tuple[str | None, dict[str, Any]]] = {}
        for key, digest, rec in self.entries():
            if digests is None:
                if wanted is None or key in wanted:
                    chosen.setdefault(key, (digest, rec))
            elif key in digests and digest == digests[key]:
                chosen[key] = (digest, rec)
        ordered = sorted(chosen)
        atomic_write_text(self.out_dir / RESULTS, "".join(json.dumps(chosen[k][1]) + "\n" for k in ordered))
        doc = {"schema": _DIGESTS_SCHEMA, "version": 1, "algorithm": "sha256",
               "digests": {k: chosen[k][0] for k in ordered if chosen[k][0] is not None}}
        atomic_write_text(self.out_dir / DIGESTS, json.dumps(doc, indent=0) + "\n")
        for path in self.part_files():
            path.unlink()
        return [chosen[k][1] for k in ordered]


def run_items(
    items: Sequence[Item],
    score_batch: Callable[[Sequence[Item]], list[dict[str, Any] | None]],
    store: ResultStore,
    state,
    batch_size: int = 8,
    desc: str = "eval",
    after_batch: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Score every item not yet scored on its current image, sharded over ``state``'s processes; merge on main.

    ``score_batch(items) -> records`` (one per item, in order; ``None`` = no result for that image this time, e.g. a
    judge that never answered: nothing is stored, so a later run tries it again). ``state`` is an ``accelerate.PartialState`` (or any
    object with ``num_processes``, ``process_index``, ``is_main_process``, ``is_local_main_process`` and
    ``wait_for_everyone``); every process calls this. ``after_batch(batches_written)`` runs after each appended batch
    (recipes hang a testing kill-switch on it). Returns the merged records on the main process, [] elsewhere.
    """
    store.out_dir.mkdir(parents=True, exist_ok=True)
    mine = shard(items, state.num_processes, state.process_index)
    mine_digests = {item.key: file_digest(item.path) for item in mine}
    done = store.done(mine_digests)
    todo = [item for item in mine if item.key not in done]
    written = 0
    for start in tqdm(range(0, len(todo), batch_size), desc=desc, unit="batch", disable=not state.is_local_main_process):
        batch = todo[start : start + batch_size]
        records = score_batch(batch)
        if len(records) != len(batch):
            raise RuntimeError(f"{desc}: scorer returned {len(records)} records for {len(batch)} images")
        kept = [(rec, mine_digests[item.key]) for item, rec in zip(batch, records) if rec is not None]
        store.append(state.process_index, [r for r, _ in kept], [d for _, d in kept])
        written += 1
        if after_batch is not None:
            after_batch(written)
    state.wait_for_everyone()
    records = store.merge({item.key: file_digest(item.path) for item in items}) if state.is_main_process else []
    state.wait_for_everyone()
    return records


def default_state():
    """``accelerate.PartialState()`` (imported lazily: building it touches the distributed environment)."""
    from accelerate import PartialState

    return PartialState()


# ---------------------------------------------------------------------------------------------------- summaries
def summary_document(
    schema: str,
    version: int,
    name: str,
    scores: Mapping[str, Any],
    config: Mapping[str, Any] | None = None,
    seeds: Sequence[int] | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The versioned summary of one run (``name`` is its row label in tables)."""
    return {
        "schema": schema,
        "version": version,
        "name": name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git": git_hash(),
        "environment": environment(),
        "config": dict(config) if config is not None else None,
        "seeds": seeds if isinstance(seeds, Mapping) or seeds is None else list(seeds),
        "scores": dict(scores),
    }


def write_summary(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=False) + "\n")


def load_summary(path: str | os.PathLike, schema: str, version: int) -> dict[str, Any]:
    """Read a summary JSON of ``schema``/``version``; errors name the file and the offending field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"summary not found: {path}")
    record = json.loads(path.read_text(encoding="utf-8"))
    if record.get("schema") != schema:
        raise ValueError(f"{path}: field 'schema' = {record.get('schema')!r}, expected {schema!r}")
    if record.get("version") != version:
        raise ValueError(f"{path}: field 'version' = {record.get('version')!r}, this code reads version {version}")
    return record


# ---------------------------------------------------------------------------------------------------- tables
def markdown_lines(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table: ``header``, then ``rows`` (first column left-aligned, the others right-aligned)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def latex_escape(text: str) -> str:
    for char, repl in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
        text = text.replace(char, repl)
    return text


def latex_lines(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A booktabs ``tabular``: first column escaped text, the others numbers (``–`` becomes ``--``)."""
    lines = [
        r"\begin{tabular}{l" + "c" * (len(header) - 1) + "}",
        r"\toprule",
        " & ".join(header) + r" \\",
        r"\midrule",
    ]
    for cells in rows:
        lines.append(" & ".join([latex_escape(cells[0]), *(c.replace("–", "--") for c in cells[1:])]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def fmt_score(value: float | None, digits: int, scale: float = 1.0) -> str:
    """A table cell: ``–`` for a missing score, else ``scale * value`` with ``digits`` decimals."""
    return "–" if value is None else f"{scale * value:.{digits}f}"


def table_cli(argv: Sequence[str] | None, *, benchmark: str, script: str, digits: int, load: Callable,
              markdown_table: Callable, latex_table: Callable, bar_chart: Callable) -> None:
    """A benchmark's table command: ``SUMMARY ... [--latex] [--digits N] [--no-published] [--plot out.png]``.

    ``load(path)`` reads a summary written by ``script``; the table functions take ``(records, digits, published)``
    and ``bar_chart`` takes ``(records, path, published)``.
    """
    import argparse

    parser = argparse.ArgumentParser(description=f"{benchmark} table: the paper's rows, then one row per summary.")
    parser.add_argument("summaries", nargs="*", help=f"summary.json files written by {script}")
    parser.add_argument("--latex", action="store_true")
    parser.add_argument("--digits", type=int, default=digits)
    parser.add_argument("--no-published", action="store_true", help="leave out the paper's rows")
    parser.add_argument("--plot", help="also write a per-category bar chart PNG here")
    args = parser.parse_args(argv)
    records = [load(p) for p in args.summaries]
    render = latex_table if args.latex else markdown_table
    print(render(records, args.digits, not args.no_published), end="")
    if args.plot:
        bar_chart(records, args.plot, not args.no_published)
