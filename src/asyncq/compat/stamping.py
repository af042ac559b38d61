"""Celery's canvas stamping: custom headers put on every task of a canvas, readable in each task as
``self.request.stamps``.

``sig.stamp(visitor)`` walks the canvas (chains, groups, chord headers and bodies, and every callback and
errback) and asks the visitor (a ``StampingVisitor``) for the stamps of each part; ``sig.stamp(key=value)``
stamps without one. As in Celery, a stamp is kept in the signature's options (``options[key] = value``) with its
name listed in ``options["stamped_headers"]``, so a stamped signature serializes like any other, links included.

When a stamped signature is sent, ``take`` moves the stamps out of the options (they are message headers, not
``apply_async`` options) and ``attach`` puts them on the message as Celery does (``stamped_headers`` and a
``stamps`` dict; ``before_task_publish`` receivers see both); the worker restores them on ``self.request``
(``stamped_headers``, ``stamps``), and a retried task keeps them because the retry is the same job.
``replaced_task_nesting`` (set by ``Task.replace``) travels the same way.
"""

from __future__ import annotations

import copy
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

import orjson

from asyncq.compat import store

if TYPE_CHECKING:
    from asyncq.compat._state import CeleryApp
    from asyncq.compat.publish import Prepared

#: options Celery's canvas sets that travel as message headers and come back on ``self.request``
CARRIED = ("replaced_task_nesting",)


class StampingVisitor(ABC):
    """Decides the stamps of each part of a canvas (Celery's visitor API): subclass it and return a dict of
    stamps from ``on_signature``; the other hooks default to no stamps."""

    def on_group_start(self, group: Any, **headers: Any) -> dict[str, Any]:
        return {}

    def on_group_end(self, group: Any, **headers: Any) -> None:
        return None

    def on_chain_start(self, chain: Any, **headers: Any) -> dict[str, Any]:
        return {}

    def on_chain_end(self, chain: Any, **headers: Any) -> None:
        return None

    @abstractmethod
    def on_signature(self, sig: Any, **headers: Any) -> dict[str, Any]:
        """The stamps of one task signature."""

    def on_chord_header_start(self, sig: Any, **header: Any) -> dict[str, Any]:
        return self.on_group_start(sig.header, **header)

    def on_chord_header_end(self, sig: Any, **header: Any) -> None:
        self.on_group_end(sig.header, **header)

    def on_chord_body(self, sig: Any, **header: Any) -> dict[str, Any]:
        return {}

    def on_callback(self, callback: Any, **header: Any) -> dict[str, Any]:
        return {}

    def on_errback(self, errback: Any, **header: Any) -> dict[str, Any]:
        return {}


def merge(into: dict[str, Any], other: dict[str, Any] | None, aggregate: bool = True) -> None:
    """Merge ``other`` into ``into`` (Celery's rules): nested dicts merge, two lists are joined; otherwise a key in
    both keeps ``into``'s value, or with ``aggregate`` (``append_stamps=True``) becomes the list of both values."""
    if not other:
        return
    for key, mine in list(into.items()):
        if key not in other:
            continue
        theirs = other[key]
        if isinstance(mine, dict) and isinstance(theirs, dict):
            merge(mine, theirs)
        elif aggregate or (isinstance(mine, list) and isinstance(theirs, list)):
            values = list(mine) if isinstance(mine, list | tuple) else [] if mine is None else [mine]
            into[key] = [*values, *theirs] if isinstance(theirs, list) else [*values, theirs]
    for key, theirs in other.items():
        into.setdefault(key, theirs)


def _names(value: Any) -> list[str]:
    if not value:
        return []
    return [value] if isinstance(value, str) else list(value)


def collect(sig: Any, visitor_headers: dict[str, Any] | None, append_stamps: bool, self_headers: bool,
            headers: dict[str, Any]) -> dict[str, Any]:
    """The stamps for ``sig``: ``headers`` (from the enclosing canvas), then the visitor's, then (with
    ``self_headers``) those ``sig`` already carries, with ``stamped_headers`` naming them all."""
    out = dict(headers)
    out.setdefault("stamped_headers", list(out))
    if visitor_headers is not None:
        visitor_headers = dict(visitor_headers)
        visitor_headers.setdefault("stamped_headers", list(visitor_headers))
        merge(out, visitor_headers, aggregate=append_stamps)
        out["stamped_headers"] = _unique(_names(out["stamped_headers"]))
    if self_headers:
        options = sig["options"]
        names = _unique([*_names(out.get("stamped_headers")), *_names(options.get("stamped_headers"))])
        out["stamped_headers"] = names
        merge(out, {k: v for k, v in options.items() if k in names}, aggregate=append_stamps)
        out["stamped_headers"] = _unique(_names(out["stamped_headers"]))
    return out


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(n for n in names if n != "stamped_headers"))


def stamp(sig: Any, visitor: StampingVisitor | None = None, append_stamps: bool = False, **headers: Any) -> Any:
    """Stamp ``sig`` and everything in it (``Signature.stamp``); returns ``sig``."""
    kind = sig.get("subtask_type")
    if kind in ("chain", "group"):  # the visitor's on_chain_start/_end or on_group_start/_end around the members
        found = getattr(visitor, f"on_{kind}_start")(sig, **headers) or {} if visitor is not None else None
        headers = collect(sig, found, append_stamps, True, headers)
        stamp_links(sig, visitor, append_stamps, **headers)
        for task in sig.tasks:
            stamp(task, visitor, append_stamps, **headers)
        if visitor is not None:
            getattr(visitor, f"on_{kind}_end")(sig, **headers)
        return sig
    if kind == "chord" and hasattr(sig, "header"):
        found = visitor.on_chord_header_start(sig, **headers) or {} if visitor is not None else None
        headers = collect(sig, found, append_stamps, True, headers)
        stamp_links(sig, visitor, append_stamps, **headers)
        for task in sig.header.tasks:
            stamp(task, visitor, append_stamps, **headers)
        if visitor is not None:
            visitor.on_chord_header_end(sig, **headers)
            if sig.body is not None:
                body_headers = collect(sig, visitor.on_chord_body(sig, **headers) or {}, append_stamps, True,
                                       headers)
                stamp(sig.body, visitor, append_stamps, **body_headers)
        return sig
    stamp_links(sig, visitor, append_stamps, **headers)
    found = visitor.on_signature(sig, **headers) or {} if visitor is not None else None
    sig["options"].update(collect(sig, found, append_stamps, True, headers))
    return sig


def stamp_links(sig: Any, visitor: StampingVisitor | None = None, append_stamps: bool = False,
                **headers: Any) -> None:
    """Stamp ``sig``'s callbacks and errbacks (kept as dicts or signatures in its options), with the visitor's
    ``on_callback`` / ``on_errback`` stamps and ``headers``, not with ``sig``'s own stamps."""
    for key, hook in (("link", "on_callback"), ("link_error", "on_errback")):
        links = sig["options"].get(key)
        if not links:
            continue
        if isinstance(links, MutableMapping):  # a single link set as a dict (options["link"] = dict(sig))
            links = [links]
        current = copy.deepcopy(headers)
        stamped: list[Any] = []
        for link in links:
            link_sig = sig.as_signature(link)
            if link_sig is None:
                continue
            found = getattr(visitor, hook)(link_sig, **current) or {} if visitor is not None else None
            current = collect(link_sig, found, append_stamps, False, current)
            stamp(link_sig, visitor, append_stamps, **current)
            stamped.append(dict(link_sig) if type(link) is dict else link_sig)  # keep the form it was stored in
        sig["options"][key] = stamped


class Stampable:
    """The stamping methods of Celery's ``Signature`` (mixed into asyncq.compat's canvas classes)."""

    def stamp(self, visitor: StampingVisitor | None = None, append_stamps: bool = False, **headers: Any) -> Any:
        return stamp(self, visitor, append_stamps, **headers)

    def stamp_links(self, visitor: StampingVisitor | None = None, append_stamps: bool = False,
                    **headers: Any) -> None:
        stamp_links(self, visitor, append_stamps, **headers)

    def as_signature(self, value: Any) -> Any:
        """``value`` (a link kept as a dict or a signature) as a signature of this one's app. The canvas classes
        give it (``canvas.maybe_signature``): stamping sits below canvas and must not import it."""
        raise NotImplementedError


# --- sending and receiving --------------------------------------------------------------------------------------
def take(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a send's options into the ``apply_async`` options and the message headers carried for Celery's
    canvas (the stamps, named by ``stamped_headers``, and ``replaced_task_nesting``)."""
    if "stamped_headers" not in options and not any(k in options for k in CARRIED):
        return options, {}
    rest = dict(options)
    carried: dict[str, Any] = {}
    names = _names(rest.pop("stamped_headers", None))
    if names:
        carried["stamped_headers"] = names
        carried["stamps"] = {name: rest.pop(name, None) for name in names}
    for key in CARRIED:
        if rest.get(key) is not None:
            carried[key] = rest.pop(key)
        rest.pop(key, None)
    return rest, carried


def attach(prepared: Prepared, carried: dict[str, Any]) -> None:
    """Put the carried headers on a prepared message: in the job's Celery headers (the worker's
    ``self.request``) and in the headers ``before_task_publish`` receivers see, as Celery's message has them."""
    if not carried:
        return
    headers = prepared.spec.options.headers
    assert headers is not None
    headers["celery"].update(carried)
    prepared.publish_headers.update(copy.deepcopy(carried))


def request_fields(celery_headers: dict[str, Any]) -> dict[str, Any]:
    """``self.request`` fields of a job's carried headers: ``stamped_headers``, ``stamps`` (each named stamp,
    None when absent), ``replaced_task_nesting`` (0 unless replaced)."""
    names = _names(celery_headers.get("stamped_headers"))
    stamps = celery_headers.get("stamps") or {}
    return {
        "stamped_headers": names or None,
        "stamps": {name: stamps.get(name) for name in names} if names else None,
        "replaced_task_nesting": int(celery_headers.get("replaced_task_nesting") or 0),
    }


def options_of(request: Any) -> dict[str, Any]:
    """The stamps of a running task as signature options, to carry them onto what replaces it."""
    names = _names(getattr(request, "stamped_headers", None))
    if not names:
        return {}
    stamps = getattr(request, "stamps", None) or {}
    return {"stamped_headers": names, **{name: stamps.get(name) for name in names}}


# --- revoking by stamps -----------------------------------------------------------------------------------------
def _values(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple | set) else [value]


def revoke_entry(name: str, value: Any) -> str:
    """How a revoked stamp is remembered: beside the revoked task ids (``store.add_revoked``, kept as long), so
    the worker's cheap "any revoke at all?" check covers stamps too. A value is compared by its JSON form."""
    return f"stamp:{name}={orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()}"


def revoke_entries(headers: dict[str, Any]) -> list[str]:
    """``{"monitoring_id": ["a", "b"]}`` -> one entry per value (a task is revoked if any of its values is)."""
    if not isinstance(headers, dict) or not headers:
        raise TypeError(f"revoke_by_stamped_headers needs a dict of stamp name -> value(s), got {headers!r}")
    return [revoke_entry(str(name), v) for name, value in headers.items() for v in _values(value)]


async def arevoke_by_stamped_headers(app: CeleryApp, headers: dict[str, Any]) -> None:
    """Revoke every task (queued now or sent later, on every worker) stamped with one of these values: Celery's
    ``control.revoke_by_stamped_headers``. A task already running is not stopped."""
    await store.add_revoked(app, revoke_entries(headers), int(time.time() * 1000))


async def revoked_stamp(app: CeleryApp, request: Any) -> dict[str, Any] | None:
    """The revoked stamp a task about to run carries (``{name: value}``), or None. Only a stamped task pays the
    reads (one per stamp value), and uncached: a revoke by stamp has no queued job to remove, so this check is
    what stops a task sent right after the revoke."""
    stamps = getattr(request, "stamps", None)
    if not stamps:
        return None
    for name, value in stamps.items():
        for v in _values(value):
            if await store.is_revoked(app, revoke_entry(name, v)):
                return {name: v}
    return None
