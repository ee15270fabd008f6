"""Where the CPU goes, from py-spy's raw (collapsed) stacks: `python bench/profile_breakdown.py DIR [--top 40]`.

Reads every `*.txt` in DIR (`bench/broker.py --profile DIR`, `bench/proxy.py --profile DIR`), keeps the
samples of request threads (stacks through gunicorn's `handle_request`), and prints, for each function, the
share of those samples in which it is on the stack (inclusive %), and the share where it is the innermost
frame of govern's or a library's code (self %)."""
from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def short(frame: str) -> str:
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("site-packages/", "/govern/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/govern/":
                path = "govern/" + path
            break
    return f"{m.group('func')} ({path})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=Path)
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--match", default="handle_request", help="keep stacks with a frame containing this")
    args = ap.parse_args()
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for path in sorted(args.dir.glob("*.txt")):
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit() or args.match not in stack:
                continue
            n = int(count)
            total += n
            frames = [short(f) for f in stack.split(";")]
            for frame in set(frames):
                inclusive[frame] += n
            own[frames[-1]] += n
    if not total:
        raise SystemExit("error: no request samples")
    print(f"{total} request samples")
    print("inclusive %  function")
    for frame, n in inclusive.most_common(args.top):
        print(f"{100 * n / total:10.1f}%  {frame}")
    print("self %       function")
    for frame, n in own.most_common(args.top // 2):
        print(f"{100 * n / total:10.1f}%  {frame}")


if __name__ == "__main__":
    main()
