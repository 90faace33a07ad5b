"""openrouter-watcher: watches the OpenRouter model catalogue and alerts on what changes."""

__version__ = "0.1.0"
