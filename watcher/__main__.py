"""``python -m watcher`` is ``openrouter-watcher``."""

from watcher.cli import main

main()
