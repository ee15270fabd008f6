"""A progress bar on stderr for long commands (apply, audit), drawn only when stderr is a terminal: piped or
redirected output gets nothing extra."""
from __future__ import annotations

from contextlib import contextmanager
from collections.abc import Callable, Iterator

import click


@contextmanager
def progress_bar(length: int, label: str) -> Iterator[Callable[[str], None]]:
    """Yields `advance(step)`: one step done, `step` naming it. A no-op when stderr is not a terminal."""
    stream = click.get_text_stream("stderr")
    if not stream.isatty():
        yield lambda step="": None
        return
    with click.progressbar(length=length, label=label, file=stream, show_eta=False,
                           item_show_func=lambda step: step) as bar:
        def advance(step: str = "") -> None:
            bar.update(1, step)

        yield advance
        bar.update(max(0, bar.length - bar.pos), "done")
