"""dicomnet.pdu.fsm against PS3.8 section 9.2, cell by cell."""
from __future__ import annotations

import pytest

from dicomnet.pdu import fsm

# PS3.8 Table 9-10 "DICOM Upper Layer Protocol State Transition Table",
# transcribed row by row from the standard (one line per event row, one column
# per state Sta1..Sta13; "-" is a blank cell). Kept as text on purpose: it is an
# independent copy of the standard's grid, not derived from the module's table.
TABLE_9_10 = """
        Sta1  Sta2  Sta3  Sta4  Sta5  Sta6  Sta7  Sta8  Sta9  Sta10 Sta11 Sta12 Sta13
Evt1    AE-1  -     -     -     -     -     -     -     -     -     -     -     -
Evt2    -     -     -     AE-2  -     -     -     -     -     -     -     -     -
Evt3    -     AA-1  AA-8  -     AE-3  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6
Evt4    -     AA-1  AA-8  -     AE-4  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6
Evt5    AE-5  -     -     -     -     -     -     -     -     -     -     -     -
Evt6    -     AE-6  AA-8  -     AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-7
Evt7    -     -     AE-7  -     -     -     -     -     -     -     -     -     -
Evt8    -     -     AE-8  -     -     -     -     -     -     -     -     -     -
Evt9    -     -     -     -     -     DT-1  -     AR-7  -     -     -     -     -
Evt10   -     AA-1  AA-8  -     AA-8  DT-2  AR-6  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6
Evt11   -     -     -     -     -     AR-1  -     -     -     -     -     -     -
Evt12   -     AA-1  AA-8  -     AA-8  AR-2  AR-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6
Evt13   -     AA-1  AA-8  -     AA-8  AA-8  AR-3  AA-8  AA-8  AR-10 AR-3  AA-8  AA-6
Evt14   -     -     -     -     -     -     -     AR-4  AR-9  -     -     AR-4  -
Evt15   -     -     AA-1  AA-2  AA-1  AA-1  AA-1  AA-1  AA-1  AA-1  AA-1  AA-1  -
Evt16   -     AA-2  AA-3  -     AA-3  AA-3  AA-3  AA-3  AA-3  AA-3  AA-3  AA-3  AA-2
Evt17   -     AA-5  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AR-5
Evt18   -     AA-2  -     -     -     -     -     -     -     -     -     -     AA-2
Evt19   -     AA-1  AA-8  -     AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-7
"""

# PS3.8 Tables 9-6 .. 9-9: the next state each action names.
NEXT_STATE = {
    "AE-1": "Sta4", "AE-2": "Sta5", "AE-3": "Sta6", "AE-4": "Sta1", "AE-5": "Sta2",
    "AE-6": ("Sta3", "Sta13"), "AE-7": "Sta6", "AE-8": "Sta13",
    "DT-1": "Sta6", "DT-2": "Sta6",
    "AR-1": "Sta7", "AR-2": "Sta8", "AR-3": "Sta1", "AR-4": "Sta13", "AR-5": "Sta1",
    "AR-6": "Sta7", "AR-7": "Sta8", "AR-8": ("Sta9", "Sta10"), "AR-9": "Sta11",
    "AR-10": "Sta12",
    "AA-1": "Sta13", "AA-2": "Sta1", "AA-3": "Sta1", "AA-4": "Sta1", "AA-5": "Sta1",
    "AA-6": "Sta13", "AA-7": "Sta13", "AA-8": "Sta13",
}


def _parse_grid() -> dict[tuple[str, str], str]:
    lines = [line.split() for line in TABLE_9_10.strip().splitlines()]
    header, rows = lines[0], lines[1:]
    cells = {}
    for row in rows:
        event, actions = row[0], row[1:]
        assert len(actions) == len(header) == 13, event
        for state, action in zip(header, actions):
            if action != "-":
                cells[(event, state)] = action
    return cells


EXPECTED = _parse_grid()
ALL_PAIRS = [(f"Evt{e}", f"Sta{s}") for e in range(1, 20) for s in range(1, 14)]


def test_states_events_actions_are_the_standards():
    assert list(fsm.STATES) == [f"Sta{i}" for i in range(1, 14)]
    assert list(fsm.EVENTS) == [f"Evt{i}" for i in range(1, 20)]
    assert set(fsm.ACTIONS) == set(NEXT_STATE)
    assert fsm.EVENTS["Evt19"].startswith("Unrecognized or invalid PDU")
    assert fsm.STATES["Sta13"].startswith("Awaiting transport connection close")


@pytest.mark.parametrize("event,state", ALL_PAIRS)
def test_cell_matches_table_9_10(event, state):
    expected = EXPECTED.get((event, state))
    got = fsm.TRANSITIONS.get((event, state))
    if expected is None:
        assert got is None
        assert fsm.lookup(event, state) is None
    else:
        assert got == (expected, NEXT_STATE[expected])
        assert fsm.lookup(event, state) == got


def test_no_extra_cells():
    assert set(fsm.TRANSITIONS) == set(EXPECTED)
    assert len(fsm.TRANSITIONS) == len(EXPECTED) == 123


@pytest.mark.parametrize("event,state", ALL_PAIRS)
def test_every_pair_has_a_defined_outcome(event, state):
    if (event, state) in fsm.TRANSITIONS:
        return
    policy = fsm.NOT_APPLICABLE[event]
    assert policy in ("refuse", "ignore")
    # A local primitive the state does not allow is always refused, never ignored.
    if event in fsm.LOCAL_PRIMITIVE_EVENTS:
        assert policy == "refuse"


def test_every_pdu_row_is_full_where_a_transport_exists():
    # With a transport connection (Sta2, Sta3, Sta5..Sta13) every PDU has a cell.
    connected = ["Sta2", "Sta3"] + [f"Sta{i}" for i in range(5, 14)]
    for event in fsm.PDU_EVENTS:
        for state in connected:
            assert (event, state) in fsm.TRANSITIONS, (event, state)
        for state in ("Sta1", "Sta4"):
            assert (event, state) not in fsm.TRANSITIONS


def test_action_effects():
    a = fsm.ACTIONS
    assert a["AA-1"].send == "A-ABORT" and a["AA-1"].artim == "start"
    assert a["AA-8"].send == "A-ABORT" and a["AA-8"].indication and a["AA-8"].artim == "start"
    assert a["AA-6"].send is None and a["AA-6"].indication is None
    assert a["AE-8"].send == "A-ASSOCIATE-RJ" and a["AE-8"].artim == "start"
    assert a["AR-4"].send == "A-RELEASE-RP" and a["AR-4"].artim == "start"
    closing = {name for name, act in a.items() if act.close}
    assert closing == {"AE-4", "AR-3", "AA-2", "AA-3"}
    for name, act in a.items():
        assert name in act.name and act.definition


def test_resolve_next_state_branches():
    assert fsm.resolve_next_state("AE-6", condition=True) == "Sta3"
    assert fsm.resolve_next_state("AE-6", condition=False) == "Sta13"
    assert fsm.resolve_next_state("AR-8", condition=True) == "Sta9"
    assert fsm.resolve_next_state("AR-8", condition=False) == "Sta10"
    assert fsm.resolve_next_state("DT-1") == "Sta6"


def test_pdu_type_events():
    assert fsm.PDU_TYPE_EVENTS == {1: "Evt6", 2: "Evt3", 3: "Evt4", 4: "Evt10", 5: "Evt12",
                                   6: "Evt13", 7: "Evt16"}


def test_lookup_rejects_unknown_names():
    with pytest.raises(KeyError):
        fsm.lookup("Evt20", "Sta1")
    with pytest.raises(KeyError):
        fsm.lookup("Evt1", "Sta14")
