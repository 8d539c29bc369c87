"""The home's signal graph: who publishes which signals, who reads them, in which order.

Elements exchange signals (the environment's and the grid's arrays) by name: an element reads
its ``inputs`` from the elements whose ``outputs`` name them.  Everything that needs that graph
takes it from here — the window (:func:`signal_order`: the order signals are merged in), the
WAMP balancer (the same order for the prepare stage's signals), the forecaster (its shadows'
signals), and the element services (:func:`signal_producers`: whose packets an element waits
for; :func:`runs_ahead`: who may compute chunks of windows ahead of the inverter).

Model layer: element classes and the spec only, no runtime.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Iterable, NamedTuple, TypeVar

from hometwin import flex as fx
from hometwin.element import Role

E = TypeVar("E")

#: Commands through which a plan changes an element: such an element is *plannable* (its request
#: depends on the window's plan, so it never runs ahead, and in a home whose inverter has a
#: strategy it computes its request only after the window's plan is in place).
PLAN_COMMANDS = (fx.HeatPlan.kind, fx.TankPlan.kind, fx.DeferTo.kind)


def plannable(element: Any) -> bool:
    """True when a strategy changes ``element``'s (a model's or its class's) requests through plans."""
    return any(k in PLAN_COMMANDS for k in getattr(element, "commands", ()))


class Member(NamedTuple):
    """An element on the roster as the signal graph and the window see it: the same for an
    element model in-process and an announced element (``Describe``) over WAMP."""

    name: str
    role: Role
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    stateful: bool = False  # ``settle_on_shortfall``: the window is cut at its first short step

    @classmethod
    def of(cls, el: Any) -> "Member":
        """An element model."""
        return cls(el.name, Role(el.role), tuple(el.inputs), tuple(el.outputs), bool(el.settle_on_shortfall))

    @classmethod
    def announced(cls, d: Any) -> "Member":
        """An element as it announced itself over WAMP (a ``Describe`` message).  A source, load or
        battery publishes its request or status, never signals: outputs it claims are ignored."""
        role = Role(d.role)
        outputs = () if role in (Role.source, Role.load, Role.storage) else tuple(d.outputs)
        return cls(d.element, role, tuple(d.inputs), outputs, bool(d.settle_on_shortfall))


def signal_order(elements: Iterable[E]) -> list[E]:
    """Elements that publish signals (anything with ``inputs`` and ``outputs``: element models,
    shadows, :class:`Member`), each after the ones whose signals it needs; a cycle keeps the
    given order."""
    pending = [e for e in elements if e.outputs]  # type: ignore[attr-defined]
    done: list[E] = []
    have: set[str] = set()
    while pending:
        pending_outputs = {s for p in pending for s in p.outputs}  # type: ignore[attr-defined]
        ready = [e for e in pending if set(e.inputs) <= have or not set(e.inputs) & pending_outputs]  # type: ignore[attr-defined]
        if not ready:  # a cycle: keep spec order
            ready = pending[:1]
        for e in ready:
            pending.remove(e)
            done.append(e)
            have |= set(e.outputs)  # type: ignore[attr-defined]
    return done


@lru_cache(maxsize=64)
def roster_signal_order(members: tuple[Member, ...]) -> tuple[Member, ...]:
    """:func:`signal_order` of a roster, worked out once per roster (a window of one step has
    no time to spare for it)."""
    return tuple(signal_order(members))


def signal_graph(home: Any) -> tuple[dict[str, Any], dict[str, set[str]]]:
    """The classes of ``home``'s enabled elements, and for each the others whose outputs it reads."""
    from hometwin.registry import element_class

    cls = {e.name: element_class(e.kind) for e in home.spec.elements if e.enabled}
    producers = {n: {p for p in cls if p != n and set(cls[p].outputs) & set(cls[n].inputs)} for n in cls}
    return cls, producers


def signal_producers(home: Any, name: str) -> set[str] | None:
    """The enabled elements of ``home`` whose outputs ``name`` reads (its signals come only from
    them); None when ``name`` is not an enabled element of the spec (then anyone's are taken)."""
    return signal_graph(home)[1].get(name)


def runs_ahead(home: Any) -> set[str]:
    """The enabled elements of ``home`` that run ahead of the windows (a chunk at a time).

    An element may when its class says so (``Element.runs_ahead``: requests and signals a pure
    function of time, config and its inputs), every producer of its inputs runs ahead, and every
    element consuming its outputs does too (the inverter takes both kinds): a per-window consumer
    gets its signals per window, so its producers stay per window.  Fixpoint from all candidates.
    """
    cls, producers = signal_graph(home)
    ahead = {n for n, c in cls.items() if getattr(c, "runs_ahead", False)
             and c.role not in (Role.storage, Role.converter) and not plannable(c) and not c.settle_on_shortfall}
    consumers = {n: {c for c in cls if n in producers[c] and cls[c].role != Role.converter} for n in cls}
    changed = True
    while changed:
        changed = False
        for n in sorted(ahead):
            if not (producers[n] <= ahead and consumers[n] <= ahead):
                ahead.discard(n)
                changed = True
    return ahead
