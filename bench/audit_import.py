"""Benchmark: import and audit 250 Salesforce metadata files the way a user does, with two `govern` processes:
`govern import salesforce DIR --name bench` (read, map, keep the org in the database) and then
`govern audit --source bench -o report.json` (load the kept org, run every rule, store the run, write the report).
Goal (#19): the two together in at most 10 s.

The files are real metadata: the shared sample (/work/shared/corpus/salesforce: permission sets, profiles,
permission set groups, connected apps, named and external credentials) copied round-robin under new names until
there are --files of them; without the sample, generated permission sets (as bench/audit.py writes). The database
is a private PostgreSQL one (`--database sqlite` for a file in the instance directory), migrated before the clock
starts. The last line gives each step's wall time and the sum.
Usage: python bench/audit_import.py [--files 250] [--database postgres|sqlite] [--runs 3]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# bench/ itself must not be on the path: bench/secrets.py would shadow the standard library's `secrets`
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._pg import create_private_database  # noqa: E402
from govern.store.db import make_engine, upgrade  # noqa: E402

BASE = os.environ.get("GOVERN_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
SAMPLE = Path(os.environ.get("GOVERN_BENCH_SF_SAMPLE", "/work/shared/corpus/salesforce"))


def make_files(root: Path, n: int) -> str:
    """`n` metadata files under root; returns where they came from."""
    sample = sorted(p for p in SAMPLE.rglob("*") if p.is_file() and p.name not in ("README.md", "SOURCES.tsv")) \
        if SAMPLE.is_dir() else []
    if not sample:
        sys.path.insert(0, str(ROOT / "bench"))
        from audit import make_files as generated  # type: ignore[import-not-found]

        generated(root, n)
        return "generated permission sets"
    for i in range(n):
        src = sample[i % len(sample)]
        rel = src.relative_to(SAMPLE)
        # a distinct component name per copy: Name.type[-meta.xml] -> Name_<i>.type[-meta.xml]
        head, dot, tail = src.name.partition(".")
        dest = root / rel.parent / f"{head}_{i}{dot}{tail}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    return f"the shared sample ({len(sample)} files) copied round-robin"


def govern(env: dict[str, str], *args: str) -> float:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "govern", *args], env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"govern {' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=250)
    ap.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    ap.add_argument("--runs", type=int, default=3, help="import + audit this many times; the median is reported")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home, org = Path(tmp) / "instance", Path(tmp) / "org"
        home.mkdir()
        source = make_files(org, args.files)
        drop = None
        if args.database == "postgres":
            url, drop = create_private_database(BASE)
        else:
            url = f"sqlite:///{home / 'govern.db'}"
        try:
            engine = make_engine(url)
            upgrade(engine)
            engine.dispose()
            env = {**os.environ, "GOVERN_HOME": str(home), "GOVERN_DATABASE_URL": url,
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))}
            imports, audits = [], []
            report = Path(tmp) / "report.json"
            for _ in range(args.runs):
                imports.append(govern(env, "import", "salesforce", str(org), "--name", "bench"))
                audits.append(govern(env, "audit", "--source", "bench", "--format", "json", "-o", str(report)))
            doc = json.loads(report.read_text())
            src = doc["sources"][0]
        finally:
            if drop is not None:
                drop()
    import_s, audit_s = statistics.median(imports), statistics.median(audits)
    print(f"files={args.files} from {source}; database={args.database}; runs={args.runs}")
    print(f"imported={src['files_imported']} skipped={src['files_skipped']} failed={src['files_failed']} "
          f"findings={len(doc['findings'])}")
    print(f"import runs: {', '.join(f'{t:.2f}' for t in imports)} s; audit runs: {', '.join(f'{t:.2f}' for t in audits)} s")
    print(f"import_s={import_s:.2f} audit_s={audit_s:.2f} total_s={import_s + audit_s:.2f} goal_s=10")


if __name__ == "__main__":
    main()
