"""The DICOM Upper Layer state machine of PS3.8 section 9.2, as data.

Theory of operation
-------------------
PS3.8 describes one association end as a machine with thirteen states
(``Sta1`` .. ``Sta13``, Tables 9-1 to 9-5) driven by nineteen events
(``Evt1`` .. ``Evt19``, Table 9-10's rows). Each cell of Table 9-10 names one
action (``AE-n`` association establishment, ``DT-n`` data transfer, ``AR-n``
release, ``AA-n`` abort; Tables 9-6 to 9-9) and each action names the next state.
Two actions choose between two next states: AE-6 (is the A-ASSOCIATE-RQ
acceptable to the service-provider?) and AR-8 (are we the association-requestor?).

This module holds exactly that: :data:`STATES`, :data:`EVENTS`, :data:`ACTIONS`
and :data:`TRANSITIONS` keyed by ``(event, state)``. It performs no I/O. The
sans-IO core (:mod:`dicomnet.pdu.connection`) turns every input -- a call from
the local user, a decoded PDU, the transport closing, the ARTIM deadline -- into
an event, looks the pair up here, and carries out the action's effects, which
:class:`Action` spells out as data (a PDU to send, an indication to give the
user, the ARTIM timer to start or stop, the transport to close).

Cells the standard leaves blank
-------------------------------
Table 9-10 fills every cell of the PDU rows (Evt3, 4, 6, 10, 12, 13, 16, 19)
for the states that have a transport connection: a PDU that is unexpected in a
state leads to AA-1 (Sta2), AA-8 (Sta3, Sta5..Sta12), or AA-6/AA-7 (Sta13).
The blank cells are pairs that cannot happen or that the local user caused:

* a local primitive (Evt1, 7, 8, 9, 11, 14, 15) in a state that does not accept
  it is a programming error of the local user: the core refuses the call
  (:data:`NOT_APPLICABLE` says ``"refuse"``), sends nothing and keeps its state;
* a PDU or transport indication in a state without a transport connection
  (Sta1, Sta4) cannot happen, because the core hands out no receive buffer
  there; the core refuses it as well;
* the ARTIM timer expiring (Evt18) outside Sta2/Sta13, the transport closing
  (Evt17) in Sta1, a second transport indication (Evt2, Evt5) -- these mean a
  timer or connection that does not exist, and are ignored (``"ignore"``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

__all__ = [
    "STATES",
    "EVENTS",
    "ACTIONS",
    "TRANSITIONS",
    "NOT_APPLICABLE",
    "LOCAL_PRIMITIVE_EVENTS",
    "PDU_EVENTS",
    "PDU_TYPE_EVENTS",
    "Action",
    "NextState",
    "lookup",
    "resolve_next_state",
]

# -- Tables 9-1 .. 9-5: the states ------------------------------------------------
STATES: dict[str, str] = {
    "Sta1": "Idle",
    "Sta2": "Transport connection open (awaiting A-ASSOCIATE-RQ PDU)",
    "Sta3": "Awaiting local A-ASSOCIATE response primitive (from local user)",
    "Sta4": "Awaiting transport connection opening to complete (from local transport service)",
    "Sta5": "Awaiting A-ASSOCIATE-AC or A-ASSOCIATE-RJ PDU",
    "Sta6": "Association established and ready for data transfer",
    "Sta7": "Awaiting A-RELEASE-RP PDU",
    "Sta8": "Awaiting local A-RELEASE response primitive (from local user)",
    "Sta9": "Release collision requestor side; awaiting A-RELEASE response (from local user)",
    "Sta10": "Release collision acceptor side; awaiting A-RELEASE-RP PDU",
    "Sta11": "Release collision requestor side; awaiting A-RELEASE-RP PDU",
    "Sta12": "Release collision acceptor side; awaiting A-RELEASE response primitive (from local user)",
    "Sta13": "Awaiting transport connection close indication (association no longer exists)",
}

# -- Table 9-10's rows: the events ------------------------------------------------
EVENTS: dict[str, str] = {
    "Evt1": "A-ASSOCIATE request (local user)",
    "Evt2": "Transport connect confirmation (local transport service)",
    "Evt3": "A-ASSOCIATE-AC PDU (received on transport connection)",
    "Evt4": "A-ASSOCIATE-RJ PDU (received on transport connection)",
    "Evt5": "Transport connection indication (local transport service)",
    "Evt6": "A-ASSOCIATE-RQ PDU (received on transport connection)",
    "Evt7": "A-ASSOCIATE response primitive (accept)",
    "Evt8": "A-ASSOCIATE response primitive (reject)",
    "Evt9": "P-DATA request primitive",
    "Evt10": "P-DATA-TF PDU",
    "Evt11": "A-RELEASE request primitive",
    "Evt12": "A-RELEASE-RQ PDU (received on open transport connection)",
    "Evt13": "A-RELEASE-RP PDU (received on transport connection)",
    "Evt14": "A-RELEASE response primitive",
    "Evt15": "A-ABORT request primitive",
    "Evt16": "A-ABORT PDU (received on open transport connection)",
    "Evt17": "Transport connection closed indication (local transport service)",
    "Evt18": "ARTIM timer expired (Association reject/release timer)",
    "Evt19": "Unrecognized or invalid PDU received",
}

#: Events that are primitives issued by the local user.
LOCAL_PRIMITIVE_EVENTS = frozenset({"Evt1", "Evt7", "Evt8", "Evt9", "Evt11", "Evt14", "Evt15"})
#: Events that are a PDU (or undecodable bytes) arriving from the peer.
PDU_EVENTS = frozenset({"Evt3", "Evt4", "Evt6", "Evt10", "Evt12", "Evt13", "Evt16", "Evt19"})
#: PDU type (PS3.8 Table 9-11 and following) -> the event its arrival is.
PDU_TYPE_EVENTS: dict[int, str] = {
    0x01: "Evt6",  # A-ASSOCIATE-RQ
    0x02: "Evt3",  # A-ASSOCIATE-AC
    0x03: "Evt4",  # A-ASSOCIATE-RJ
    0x04: "Evt10",  # P-DATA-TF
    0x05: "Evt12",  # A-RELEASE-RQ
    0x06: "Evt13",  # A-RELEASE-RP
    0x07: "Evt16",  # A-ABORT
}

# A next state is one state, or (if-condition, otherwise) for AE-6 and AR-8.
NextState = Union[str, tuple[str, str]]
Artim = Literal["start", "stop", None]


@dataclass(frozen=True, slots=True)
class Action:
    """One action of PS3.8 Tables 9-6 .. 9-9, with its effects spelled out.

    ``send`` names the PDU the action writes, ``indication`` the primitive it
    gives the local user, ``artim`` what it does to the ARTIM timer, ``close``
    whether it closes the transport connection. ``next_state`` is a state, or
    for AE-6 / AR-8 a pair ``(state if the condition holds, state otherwise)``.
    """

    name: str
    definition: str
    next_state: NextState
    send: str | None = None
    indication: str | None = None
    artim: Artim = None
    close: bool = False


def _actions(*items: Action) -> dict[str, Action]:
    return {a.name: a for a in items}


# -- Tables 9-6 .. 9-9: the actions -----------------------------------------------
ACTIONS: dict[str, Action] = _actions(
    # Table 9-6, association establishment
    Action("AE-1", "Issue TRANSPORT CONNECT request primitive to local transport service", "Sta4"),
    Action("AE-2", "Send A-ASSOCIATE-RQ-PDU", "Sta5", send="A-ASSOCIATE-RQ"),
    Action("AE-3", "Issue A-ASSOCIATE confirmation (accept) primitive", "Sta6",
           indication="A-ASSOCIATE confirmation (accept)"),
    Action("AE-4", "Issue A-ASSOCIATE confirmation (reject) primitive and close transport connection",
           "Sta1", indication="A-ASSOCIATE confirmation (reject)", close=True),
    Action("AE-5", "Issue transport connection response primitive; start ARTIM timer", "Sta2",
           artim="start"),
    # AE-6 stops ARTIM, then either indicates (Sta3) or sends A-ASSOCIATE-RJ and
    # restarts ARTIM (Sta13); the core carries out the branch.
    Action("AE-6", "Stop ARTIM timer and if A-ASSOCIATE-RQ acceptable by service-provider: issue "
           "A-ASSOCIATE indication primitive (Sta3), otherwise issue A-ASSOCIATE-RJ-PDU and start "
           "ARTIM timer (Sta13)", ("Sta3", "Sta13"), indication="A-ASSOCIATE indication",
           artim="stop"),
    Action("AE-7", "Send A-ASSOCIATE-AC PDU", "Sta6", send="A-ASSOCIATE-AC"),
    Action("AE-8", "Send A-ASSOCIATE-RJ PDU and start ARTIM timer", "Sta13",
           send="A-ASSOCIATE-RJ", artim="start"),
    # Table 9-7, data transfer
    Action("DT-1", "Send P-DATA-TF PDU", "Sta6", send="P-DATA-TF"),
    Action("DT-2", "Send P-DATA indication primitive", "Sta6", indication="P-DATA indication"),
    # Table 9-8, association release
    Action("AR-1", "Send A-RELEASE-RQ PDU", "Sta7", send="A-RELEASE-RQ"),
    Action("AR-2", "Issue A-RELEASE indication primitive", "Sta8", indication="A-RELEASE indication"),
    Action("AR-3", "Issue A-RELEASE confirmation primitive, and close transport connection", "Sta1",
           indication="A-RELEASE confirmation", close=True),
    Action("AR-4", "Issue A-RELEASE-RP PDU and start ARTIM timer", "Sta13", send="A-RELEASE-RP",
           artim="start"),
    Action("AR-5", "Stop ARTIM timer", "Sta1", artim="stop"),
    Action("AR-6", "Issue P-DATA indication", "Sta7", indication="P-DATA indication"),
    Action("AR-7", "Issue P-DATA-TF PDU", "Sta8", send="P-DATA-TF"),
    Action("AR-8", "Issue A-RELEASE indication (release collision): if association-requestor, next "
           "state is Sta9, if not, next state is Sta10", ("Sta9", "Sta10"),
           indication="A-RELEASE indication"),
    Action("AR-9", "Send A-RELEASE-RP PDU", "Sta11", send="A-RELEASE-RP"),
    Action("AR-10", "Issue A-RELEASE confirmation primitive", "Sta12",
           indication="A-RELEASE confirmation"),
    # Table 9-9, association abort
    Action("AA-1", "Send A-ABORT PDU (service-user source) and start (or restart if already "
           "started) ARTIM timer", "Sta13", send="A-ABORT", artim="start"),
    Action("AA-2", "Stop ARTIM timer if running. Close transport connection", "Sta1", artim="stop",
           close=True),
    Action("AA-3", "If service-user initiated abort: issue A-ABORT indication and close transport "
           "connection; otherwise (service-provider initiated abort): issue A-P-ABORT indication "
           "and close transport connection", "Sta1", indication="A-ABORT or A-P-ABORT indication",
           close=True),
    Action("AA-4", "Issue A-P-ABORT indication primitive", "Sta1", indication="A-P-ABORT indication"),
    Action("AA-5", "Stop ARTIM timer", "Sta1", artim="stop"),
    Action("AA-6", "Ignore PDU", "Sta13"),
    Action("AA-7", "Send A-ABORT PDU", "Sta13", send="A-ABORT"),
    Action("AA-8", "Send A-ABORT PDU (service-provider source), issue an A-P-ABORT indication, and "
           "start ARTIM timer", "Sta13", send="A-ABORT", indication="A-P-ABORT indication",
           artim="start"),
)


def _row(**cells: str) -> dict[str, str]:
    return {"Sta" + key[3:]: action for key, action in cells.items()}


_ALL_CONNECTED = ("Sta6", "Sta7", "Sta8", "Sta9", "Sta10", "Sta11", "Sta12")

# -- Table 9-10: the state transition table, one row per event --------------------
# Each row maps state -> action; Sta6..Sta12 share one action in most PDU rows.
_TABLE_9_10: dict[str, dict[str, str]] = {
    "Evt1": _row(Sta1="AE-1"),
    "Evt2": _row(Sta4="AE-2"),
    "Evt3": {"Sta2": "AA-1", "Sta3": "AA-8", "Sta5": "AE-3",
             **{s: "AA-8" for s in _ALL_CONNECTED}, "Sta13": "AA-6"},
    "Evt4": {"Sta2": "AA-1", "Sta3": "AA-8", "Sta5": "AE-4",
             **{s: "AA-8" for s in _ALL_CONNECTED}, "Sta13": "AA-6"},
    "Evt5": _row(Sta1="AE-5"),
    "Evt6": {"Sta2": "AE-6", "Sta3": "AA-8", "Sta5": "AA-8",
             **{s: "AA-8" for s in _ALL_CONNECTED}, "Sta13": "AA-7"},
    "Evt7": _row(Sta3="AE-7"),
    "Evt8": _row(Sta3="AE-8"),
    "Evt9": _row(Sta6="DT-1", Sta8="AR-7"),
    "Evt10": {"Sta2": "AA-1", "Sta3": "AA-8", "Sta5": "AA-8",
              **{s: "AA-8" for s in _ALL_CONNECTED}, "Sta6": "DT-2", "Sta7": "AR-6",
              "Sta13": "AA-6"},
    "Evt11": _row(Sta6="AR-1"),
    "Evt12": {"Sta2": "AA-1", "Sta3": "AA-8", "Sta5": "AA-8",
              **{s: "AA-8" for s in _ALL_CONNECTED}, "Sta6": "AR-2", "Sta7": "AR-8",
              "Sta13": "AA-6"},
    "Evt13": {"Sta2": "AA-1", "Sta3": "AA-8", "Sta5": "AA-8",
              **{s: "AA-8" for s in _ALL_CONNECTED}, "Sta7": "AR-3", "Sta10": "AR-10",
              "Sta11": "AR-3", "Sta13": "AA-6"},
    "Evt14": _row(Sta8="AR-4", Sta9="AR-9", Sta12="AR-4"),
    "Evt15": {"Sta3": "AA-1", "Sta4": "AA-2", "Sta5": "AA-1", **{s: "AA-1" for s in _ALL_CONNECTED}},
    "Evt16": {"Sta2": "AA-2", "Sta3": "AA-3", "Sta5": "AA-3",
              **{s: "AA-3" for s in _ALL_CONNECTED}, "Sta13": "AA-2"},
    "Evt17": {"Sta2": "AA-5", "Sta3": "AA-4", "Sta4": "AA-4", "Sta5": "AA-4",
              **{s: "AA-4" for s in _ALL_CONNECTED}, "Sta13": "AR-5"},
    "Evt18": _row(Sta2="AA-2", Sta13="AA-2"),
    "Evt19": {"Sta2": "AA-1", "Sta3": "AA-8", "Sta5": "AA-8",
              **{s: "AA-8" for s in _ALL_CONNECTED}, "Sta13": "AA-7"},
}

#: THE table: ``(event, state) -> (action, next_state)``, PS3.8 Table 9-10.
TRANSITIONS: dict[tuple[str, str], tuple[str, NextState]] = {
    (event, state): (action, ACTIONS[action].next_state)
    for event, row in _TABLE_9_10.items()
    for state, action in row.items()
}

#: What the core does with a pair that Table 9-10 leaves blank (see the module
#: docstring): ``"refuse"`` raises without changing state, ``"ignore"`` does nothing.
NOT_APPLICABLE: dict[str, Literal["refuse", "ignore"]] = {
    **{e: "refuse" for e in LOCAL_PRIMITIVE_EVENTS},
    **{e: "refuse" for e in PDU_EVENTS},
    "Evt2": "ignore",
    "Evt5": "ignore",
    "Evt17": "ignore",
    "Evt18": "ignore",
}


def lookup(event: str, state: str) -> tuple[str, NextState] | None:
    """The cell of Table 9-10 for ``(event, state)``, or None where it is blank."""
    if event not in EVENTS or state not in STATES:
        raise KeyError(f"unknown event/state pair ({event!r}, {state!r})")
    return TRANSITIONS.get((event, state))


def resolve_next_state(action: str, *, condition: bool = True) -> str:
    """The next state after ``action``; ``condition`` picks AE-6's / AR-8's branch.

    For AE-6 the condition is "the A-ASSOCIATE-RQ is acceptable to the
    service-provider"; for AR-8 it is "this end is the association-requestor".
    """
    nxt = ACTIONS[action].next_state
    if isinstance(nxt, tuple):
        return nxt[0] if condition else nxt[1]
    return nxt
