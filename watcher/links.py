"""The URLs this daemon builds for a model: pure, and safe whatever the id holds.

Model ids are third-party text.  ``evil/../../api/account`` made a link that a browser
resolves to ``/api/account``; encoding the dots does not help, since browsers also resolve
``%2e%2e`` segments (WHATWG URL standard).  So an id with an empty, ``.`` or ``..`` segment
has its ``/`` encoded too and makes a single path segment; any other id keeps its ``/``
(``/models/z-ai/glm-4.7``), and every character but letters, digits, ``-._~`` and ``:``
is percent-encoded (``@`` too: a chat service must not read ``@everyone`` in a link as a
mention).  The page routes decode ``%2F`` back to ``/``.  An id that is nothing but ``.``
or ``..`` cannot be a path segment in any encoding: it links to the change page filtered
on it (``/?model=..``).
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

_DOT_SEGMENTS = frozenset({"", ".", ".."})


def model_id_path(model: str) -> str:
    """``model`` encoded as URL path segments: ``z-ai/glm-4.7``, ``evil%2F..%2Fapi``."""
    if _DOT_SEGMENTS.intersection(model.split("/")):
        return quote(model, safe=":")
    return quote(model, safe="/:")


def model_path(base: str, model: str) -> str:
    """The page of ``model`` under ``base`` (a prefix such as ``""`` or ``/watcher``, or a
    public URL such as ``https://watcher.example.com``): ``{base}/models/{id}``."""
    if model in (".", ".."):
        return f"{base.rstrip('/')}/?{urlencode({'model': model})}"
    return f"{base.rstrip('/')}/models/{model_id_path(model)}"
