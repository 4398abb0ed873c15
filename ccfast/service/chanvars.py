"""A member channel's headers as ccfast knows them: the connect reply plus what changed since.

mod_callcenter reads the member's variables live (exit keys, announcements, caller id, exported
variables can change while the caller waits), so the ``variable_*`` headers of every event of the
member channel update the view. Kept cheaply, because one exists per waiting caller:

* ``base`` is the connect reply's header index as the decoder made it (with the Cython decoder a
  ``LazyHeaders`` over the raw bytes: ~150 headers cost the bytes plus 20 bytes each, and a value
  becomes a ``str`` only when read), never a dict of ~300 strings;
* ``overlay`` holds only the variables whose value differs from ``base`` (a handful per caller).

``update_from(event_headers)`` folds one event in: with the Cython decoder only the variables whose
raw bytes differ from the connect reply are decoded. A variable that is absent from an event keeps
its value (events without variables say nothing about them), as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

VARIABLE_PREFIX = "variable_"
_MISSING = object()


class ChannelVars(Mapping):
    """Read-only mapping: ``overlay`` over ``base`` (first value per name)."""

    __slots__ = ("base", "overlay", "_memo")

    def __init__(self, base: Mapping[str, str] | None = None) -> None:
        self.base: Any = base if base is not None else {}
        self.overlay: dict[str, str] = {}
        self._memo: dict[str, Any] | None = None

    def memo(self, key: str, compute: Callable[[Mapping[str, str]], Any]) -> Any:
        """``compute(self)``, remembered until the next change of the variables."""
        memo = self._memo
        if memo is None:
            memo = self._memo = {}
        value = memo.get(key, _MISSING)
        if value is _MISSING:
            value = memo[key] = compute(self)
        return value

    def __bool__(self) -> bool:
        return bool(self.overlay) or bool(len(self.base))

    def __getitem__(self, name: str) -> str:
        value = self.overlay.get(name, _MISSING)
        if value is _MISSING:
            return self.base[name]
        return value  # type: ignore[return-value]

    def get(self, name: str, default: Any = None) -> Any:
        value = self.overlay.get(name, _MISSING)
        if value is _MISSING:
            return self.base.get(name, default)
        return value

    def __contains__(self, name: object) -> bool:
        return name in self.overlay or name in self.base

    def items(self):  # one decoding pass over base, not one lookup per name
        merged = dict(self.base.items())
        merged.update(self.overlay)
        return merged.items()

    def __iter__(self) -> Iterator[str]:
        return iter(dict(self.items()))

    def __len__(self) -> int:
        return len(dict(self.items()))

    def update_from(self, headers: Any) -> None:
        """Fold in the ``variable_*`` headers of one event of this channel."""
        changed = getattr(headers, "changed_since", None)
        if changed is not None:
            diff = changed(self.base, VARIABLE_PREFIX)
        else:
            base = self.base
            diff = [(k, v) for k, v in headers.items() if k.startswith(VARIABLE_PREFIX) and base.get(k) != v]
        overlay = self.overlay
        if diff:
            self._memo = None
        if overlay:
            # a variable set back to its connect-time value leaves the overlay
            differs = {k for k, _ in diff}
            for name in [k for k in overlay if k not in differs and k in headers]:
                del overlay[name]
                self._memo = None
        overlay.update(diff)
