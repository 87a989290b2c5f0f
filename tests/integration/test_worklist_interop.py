"""Modality Worklist C-FIND (PS3.4 Annex K, SOP class 1.2.840.10008.5.1.4.31)
against real peers, in both directions.

* our Client -> dcmtk ``wlmscpfs`` (worklist files in ``DIR/WLMSCP/*.wl``),
  -> Orthanc's ModalityWorklists plugin, and -> a pynetdicom worklist SCP in
  its own process;
* dcmtk ``findscu -W`` and a pynetdicom SCU -> our Server, whose handler
  matches the same worklist entries (single values, ``*``/``?``, date
  ranges, sequence items) and records the query it was given.

Every side works from one table of worklist entries (:data:`ENTRIES`), written
as Part 10 files by dicomnet's writer; answers are compared with those files
value by value, and final statuses and counts are checked exactly.

Peer quirks the tests live with (not dicomnet's doing):

* wlmscpfs 3.6.7 has no option to choose the address it listens on: it binds
  every interface (``free_port`` checks 0.0.0.0 too; the tests only ever
  connect to 127.0.0.1). It answers without Specific Character Set unless
  told otherwise; it runs with ``-csk`` (keep the file's). It ignores the
  query's Specific Character Set (it logs so) and matches bytes: a UTF-8
  ``Mü*`` does not match the Latin-1 "Müller" file, so each non-ASCII query
  is sent in the file's own character set. An empty item in a sequence key
  is expanded into wlmscpfs's own list of that sequence's keys (code items
  come back with an empty CodingSchemeVersion too). It ignores a worklist
  file holding a sequence without items as "incomplete" (such an entry leaves
  the sequence out instead), and leaves a requested type 2 sequence the file
  lacks out of its answer. It answers a key it does not support with Pending
  0xFF01. It pads PN values to even length with a space and answers in
  directory order (sets are compared).
* Orthanc 1.10.1 refuses a worklist C-FIND from an AE it does not know with
  an A-ABORT unless ``DicomAlwaysAllowFindWorklist`` is set. It answers in its
  ``DefaultEncoding`` whatever the file's or the query's character set, and
  silently drops characters that encoding lacks (with the default Latin1,
  "山田^太郎" comes back as "^"): it runs with ``Utf8``. The plugin reads the
  ``*.wl`` files of its ``Database`` folder (no other name) at every query.
* pynetdicom 3.0.4's ``QueryRetrievePresentationContexts`` does not hold the
  worklist SOP class, so :class:`~.peers.PynetdicomSCP` cannot serve it; the
  pynetdicom SCP here is a script of its own. pydicom writes sequences and
  items with undefined lengths.
* findscu (``-X``) writes the answers it extracts with undefined-length
  sequences: they are compared by value.
"""
from __future__ import annotations

import json
import re
import sys
import time
from io import BytesIO
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from dicomnet import (
    AssociationRejected,
    Client,
    Dataset,
    DimseStatusError,
    Server,
    read_dataset,
    read_file,
    write_file,
)
from dicomnet.association import Association
from dicomnet.dimse.scu import FIND_MODELS

from .peers import (
    HOST,
    START_TIMEOUT,
    Orthanc,
    _answers_echo,
    _Process,
    findscu,
    free_port,
    port_accepts,
    record_started,
    require,
    run_tool,
)

WORKLIST = FIND_MODELS["worklist"]
assert WORKLIST == "1.2.840.10008.5.1.4.31"
EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
STUDY_CLASS = "1.2.840.10008.3.1.2.3.1"          # Detached Study Management (Referenced Study Sequence)
SUCCESS, PENDING, PENDING_OPTIONAL, CANCEL = 0x0000, 0xFF00, 0xFF01, 0xFE00
IDENTIFIER_DOES_NOT_MATCH = 0xA900

Entry = tuple[str, str, str, str, str, str, str, tuple[str, ...], str, str, str, str,
              list[tuple[str, str, str]]]
#: (SpecificCharacterSet, PatientName, PatientID, PatientBirthDate, PatientSex,
#: AccessionNumber, Modality, ScheduledStationAETitle(s), step start date,
#: start time, ScheduledPerformingPhysicianName, step description,
#: [(CodeValue, CodingSchemeDesignator, CodeMeaning)] of the requested procedure).
ENTRIES: list[Entry] = [
    ("ISO_IR 100", "Smith^John", "WL-SMITH", "19610402", "M", "ACC1001", "CT", ("CT01",), "20240310", "083000",
     "House^Gregory", "CT CHEST", [("CTCH", "99DNET", "CT chest")]),
    ("ISO_IR 100", "Smythe^Jane", "WL-SMYTHE", "19750923", "F", "ACC1002", "MR", ("MR01",), "20240311", "091500",
     "Wilson^James", "MR BRAIN", [("MRBR", "99DNET", "MR brain"), ("MRGAD", "99DNET", "with contrast")]),
    ("ISO_IR 100", "Müller^Anna", "WL-MUELLER", "19880117", "F", "ACC1003", "CT", ("CT02",), "20240315", "140000",
     "Schäfer^Jürgen", "CT ABDOMEN", [("CTAB", "99DNET", "CT abdomen")]),
    ("ISO_IR 192", "Yamada^Tarou=山田^太郎=やまだ^たろう", "WL-YAMADA", "19700101", "M", "ACC1004", "US",
     ("US01", "US02"), "20240320", "101500", "Gößmann^Jürgen", "US ABDOMEN", []),
]

#: Top-level return keys and Scheduled Procedure Step item keys the queries ask for.
KEYS = ("AccessionNumber", "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
        "RequestedProcedureID", "RequestedProcedureDescription")
STEP_KEYS = ("Modality", "ScheduledStationAETitle", "ScheduledProcedureStepStartDate",
             "ScheduledProcedureStepStartTime", "ScheduledPerformingPhysicianName",
             "ScheduledProcedureStepDescription", "ScheduledProcedureStepID")
CODE_KEYS = ("CodeValue", "CodingSchemeDesignator", "CodeMeaning")


# ------------------------------------------------------------------ helpers
def item(**values: Any) -> Dataset:
    """A Dataset of keyword -> value (a sequence item, a query)."""
    ds = Dataset()
    for key, value in values.items():
        ds.set(key, value)
    return ds


def entry_dataset(n: int, entry: Entry) -> Dataset:
    """The worklist entry ``n`` as a Dataset (a Requested Procedure with one step)."""
    (charset, name, patient_id, birth_date, sex, accession, modality, stations, date, start, physician,
     description, codes) = entry
    step = item(Modality=modality, ScheduledStationAETitle=list(stations), ScheduledProcedureStepStartDate=date,
                ScheduledProcedureStepStartTime=start, ScheduledPerformingPhysicianName=physician,
                ScheduledProcedureStepDescription=description, ScheduledProcedureStepID=f"SPS{n}",
                ScheduledStationName=f"STATION{n}", ScheduledProcedureStepLocation=f"ROOM {n}")
    study_uid = f"1.2.826.0.1.3680043.9.7433.31.{n}"
    ds = item(
        SpecificCharacterSet=charset, AccessionNumber=accession,
        ReferencedStudySequence=[item(ReferencedSOPClassUID=STUDY_CLASS, ReferencedSOPInstanceUID=study_uid)],
        PatientName=name, PatientID=patient_id, PatientBirthDate=birth_date, PatientSex=sex,
        StudyInstanceUID=study_uid, RequestingPhysician="Cuddy^Lisa", RequestedProcedureDescription=description,
        ScheduledProcedureStepSequence=[step], RequestedProcedureID=f"RP{n}",
        RequestedProcedurePriority="ROUTINE")
    if codes:   # (wlmscpfs ignores a file whose sequence has no item: absent instead)
        ds.RequestedProcedureCodeSequence = [item(CodeValue=v, CodingSchemeDesignator=s, CodeMeaning=m)
                                             for v, s, m in codes]
    return ds


def write_worklist(folder: Path) -> dict[str, Dataset]:
    """``ENTRIES`` as ``folder/entryN.wl`` Part 10 files; PatientID -> the data
    set read back from its file (what answers are compared with)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for n, entry in enumerate(ENTRIES, 1):
        path = folder / f"entry{n}.wl"
        write_file(path, entry_dataset(n, entry), EXPLICIT)
        ds = read_file(path)
        out[str(ds.PatientID)] = ds
    return out


def wl_query(charset: str | None = None, step: dict[str, Any] | None = None, **keys: Any) -> Dataset:
    """A worklist Identifier: every return key of ``KEYS`` and ``STEP_KEYS``
    (empty: universal), with the matching keys given."""
    sps = item(**({k: None for k in STEP_KEYS} | (step or {})))
    query = item(**({k: None for k in KEYS} | keys), ScheduledProcedureStepSequence=[sps])
    if charset is not None:
        query.SpecificCharacterSet = charset
    return query


def text(value: Any) -> str:
    """A value as text (multi-valued ones joined with a backslash)."""
    if value is None:
        return ""
    if isinstance(value, list):
        return "\\".join(text(v) for v in value)
    return str(value)


View = tuple[tuple[str, ...], tuple[str, ...]]


def view(ds: Dataset) -> View:
    """The values of ``KEYS`` and of the first step's ``STEP_KEYS``, as text."""
    [step] = ds.ScheduledProcedureStepSequence
    return tuple(text(ds.get(k)) for k in KEYS), tuple(text(step.get(k)) for k in STEP_KEYS)


def views(sources: dict[str, Dataset], *patient_ids: str) -> set[View]:
    return {view(sources[pid]) for pid in patient_ids}


def codes(ds: Dataset) -> list[tuple[str, ...]]:
    return [tuple(text(code.get(k)) for k in CODE_KEYS) for code in ds.get("RequestedProcedureCodeSequence") or []]


def find_all(assoc: Association, query: Dataset) -> tuple[list[Dataset], Any]:
    """C-FIND ``query`` (worklist model); the matches and the result, after
    checking the final status (Success) and the match count."""
    result = assoc.find(query, model="worklist")
    found = list(result)
    assert result.done and result.status == SUCCESS, result
    assert result.matches == len(found)
    return found, result


def sent(query: Dataset, syntax: str = EXPLICIT) -> Dataset:
    """``query`` as it reads back from its own encoding (an empty value then
    reads as "" or an empty PersonName, not None): what a peer should decode."""
    return read_dataset(bytes(query.encode(syntax)), transfer_syntax=syntax)


def ids(found: Sequence[Dataset]) -> set[str]:
    """The PatientIDs of the answers, each answered once."""
    out = [str(ds.PatientID) for ds in found]
    assert len(out) == len(set(out)), f"an entry answered twice: {out}"
    return set(out)


# ------------------------------------------------------------- dcmtk wlmscpfs
class Wlmscpfs(_Process):
    """dcmtk ``wlmscpfs`` serving ``ENTRIES`` as ``DIR/<aet>/*.wl`` (plus the
    ``lockfile`` it insists on). ``sources``: PatientID -> the file's data set."""

    name = "wlmscpfs"

    def __init__(self, aet: str = "WLMSCP", args: Sequence[str] = ("-csk",), timeout: float = START_TIMEOUT) -> None:
        super().__init__()
        self.aet, self.args, self.timeout = aet, list(args), timeout
        self.port = 0
        self.sources: dict[str, Dataset] = {}

    def start(self) -> None:
        require("wlmscpfs", "echoscu")
        d = self._mkdir()
        folder = d / "db" / self.aet
        self.sources = write_worklist(folder)
        (folder / "lockfile").touch()
        self.port = free_port()
        # No bind option in 3.6.7: it listens on all interfaces (module docstring).
        self._spawn(["wlmscpfs", "-dfp", str(d / "db"), *self.args, str(self.port)])
        self._wait_until(lambda: _answers_echo(self.port, self.aet), self.timeout)


@pytest.fixture(scope="module")
def wlmscpfs() -> Iterator[Wlmscpfs]:
    with Wlmscpfs() as peer:
        yield peer


def connect(port: int, called: str, **kw: Any) -> Association:
    """Our association (default proposal; a short DIMSE timeout turns a hang into a failure)."""
    return Client("DNETWL", dimse_timeout=10).associate(HOST, port, called, **kw)


@pytest.mark.parametrize("syntax", [EXPLICIT, IMPLICIT], ids=["explicit", "implicit"])
def test_wlmscpfs_universal_match_returns_every_entry_filled_in(wlmscpfs: Wlmscpfs, syntax: str) -> None:
    """Every key empty (universal matching, PS3.4 C.2.2.2.3): each worklist file
    is one answer, every requested key -- at the top level and in the step item
    -- filled in with the file's values; in either little endian syntax."""
    with connect(wlmscpfs.port, wlmscpfs.aet, contexts=[(WORKLIST, [syntax])]) as assoc:
        assert assoc.context_for(WORKLIST).transfer_syntax == syntax
        found, _ = find_all(assoc, wl_query())
    assert len(found) == len(ENTRIES)
    assert {view(ds) for ds in found} == views(wlmscpfs.sources, *wlmscpfs.sources)
    by_id = {str(ds.PatientID): ds for ds in found}
    assert by_id["WL-YAMADA"].ScheduledProcedureStepSequence[0].ScheduledStationAETitle == ["US01", "US02"]
    assert by_id["WL-SMITH"].ScheduledProcedureStepSequence[0].ScheduledStationAETitle == "CT01"
    for ds in found:
        [step] = ds.ScheduledProcedureStepSequence
        assert all(text(step.get(k)) for k in STEP_KEYS), step     # nothing left empty
        assert all(text(ds.get(k)) for k in KEYS), ds


@pytest.mark.parametrize("step, expected", [
    ({"Modality": "CT"}, {"WL-SMITH", "WL-MUELLER"}),
    ({"Modality": "MR"}, {"WL-SMYTHE"}),
    ({"Modality": "NM"}, set()),
    ({"ScheduledStationAETitle": "CT01"}, {"WL-SMITH"}),
    ({"ScheduledStationAETitle": "US02"}, {"WL-YAMADA"}),                 # one of two values
    ({"ScheduledProcedureStepStartDate": "20240311-20240316"}, {"WL-SMYTHE", "WL-MUELLER"}),
    ({"ScheduledProcedureStepStartDate": "-20240311"}, {"WL-SMITH", "WL-SMYTHE"}),
    ({"ScheduledProcedureStepStartDate": "20240315-"}, {"WL-MUELLER", "WL-YAMADA"}),
    ({"ScheduledProcedureStepStartDate": "20240320"}, {"WL-YAMADA"}),
    ({"ScheduledPerformingPhysicianName": "House^Gregory"}, {"WL-SMITH"}),
    ({"ScheduledPerformingPhysicianName": "W*"}, {"WL-SMYTHE"}),
    ({"Modality": "CT", "ScheduledProcedureStepStartDate": "20240312-20241231",
      "ScheduledPerformingPhysicianName": "Sch*"}, {"WL-MUELLER"}),
], ids=["modality-ct", "modality-mr", "modality-none", "station", "station-second-value", "date-range",
        "date-until", "date-from", "date-single", "physician", "physician-wildcard", "combined"])
def test_wlmscpfs_matches_on_scheduled_procedure_step_keys(wlmscpfs: Wlmscpfs, step: dict[str, str],
                                                           expected: set[str]) -> None:
    """Matching keys inside the Scheduled Procedure Step Sequence item (Modality,
    station AE, start date ranges, performing physician): exactly the expected
    entries, each answer equal to its file; no match is zero answers and Success."""
    with connect(wlmscpfs.port, wlmscpfs.aet) as assoc:
        found, result = find_all(assoc, wl_query(step=step))
        assert result.matches == len(expected)
        assert ids(found) == expected
        assert {view(ds) for ds in found} == views(wlmscpfs.sources, *expected)
        assert assoc.echo() == SUCCESS


@pytest.mark.parametrize("name, expected", [
    ("Sm*", {"WL-SMITH", "WL-SMYTHE"}),
    ("Sm?th^*", {"WL-SMITH"}),
    ("*^J*", {"WL-SMITH", "WL-SMYTHE"}),
    ("Smythe^Jane", {"WL-SMYTHE"}),
    ("smith*", set()),                                  # PN matching is case sensitive here
    ("Doe*", set()),
])
def test_wlmscpfs_patient_name_wildcards(wlmscpfs: Wlmscpfs, name: str, expected: set[str]) -> None:
    with connect(wlmscpfs.port, wlmscpfs.aet) as assoc:
        found, _ = find_all(assoc, wl_query(PatientName=name))
    assert ids(found) == expected
    assert {view(ds) for ds in found} == views(wlmscpfs.sources, *expected)


def test_wlmscpfs_non_ascii_names(wlmscpfs: Wlmscpfs) -> None:
    """Latin-1 (ISO_IR 100) and UTF-8 (ISO_IR 192) entries found by non-ASCII
    keys -- top level and in the step item -- in their own character set,
    answered in it (``-csk``) and decoded; a key in the other character set
    matches nothing (wlmscpfs compares bytes)."""
    with connect(wlmscpfs.port, wlmscpfs.aet) as assoc:
        latin, _ = find_all(assoc, wl_query("ISO_IR 100", PatientName="Mü*"))
        latin_step, _ = find_all(assoc, wl_query("ISO_IR 100", step={"ScheduledPerformingPhysicianName": "Schäfer^J*"}))
        utf8, _ = find_all(assoc, wl_query("ISO_IR 192", PatientName="*山田^太郎*"))
        utf8_step, _ = find_all(assoc, wl_query("ISO_IR 192", step={"ScheduledPerformingPhysicianName": "Gößmann^J*"}))
        mismatch, _ = find_all(assoc, wl_query("ISO_IR 192", PatientName="Mü*"))
    assert [(m.SpecificCharacterSet, str(m.PatientName)) for m in latin] == [("ISO_IR 100", "Müller^Anna")]
    assert [(m.SpecificCharacterSet, str(m.PatientName)) for m in utf8] == [
        ("ISO_IR 192", "Yamada^Tarou=山田^太郎=やまだ^たろう")]
    assert [str(m.ScheduledProcedureStepSequence[0].ScheduledPerformingPhysicianName) for m in latin_step] == [
        "Schäfer^Jürgen"]
    assert [str(m.ScheduledProcedureStepSequence[0].ScheduledPerformingPhysicianName) for m in utf8_step] == [
        "Gößmann^Jürgen"]
    assert view(latin[0]) == view(latin_step[0]) == view(wlmscpfs.sources["WL-MUELLER"])
    assert view(utf8[0]) == view(utf8_step[0]) == view(wlmscpfs.sources["WL-YAMADA"])
    assert mismatch == []


def test_wlmscpfs_query_item_appended_to_its_sequence(wlmscpfs: Wlmscpfs) -> None:
    """A step item added with ``append`` (as pydicom users write it) holds a
    Latin-1 key: PS3.3 C.12.1.1.2 gives an item without its own Specific
    Character Set the enclosing data set's, so the query goes out in ISO_IR 100
    and finds the entry."""
    query = wl_query("ISO_IR 100")
    query.ScheduledProcedureStepSequence = []
    query.ScheduledProcedureStepSequence.append(item(Modality=None, ScheduledPerformingPhysicianName="Schäfer*"))
    with connect(wlmscpfs.port, wlmscpfs.aet) as assoc:
        found, _ = find_all(assoc, query)
    assert ids(found) == {"WL-MUELLER"}


def test_wlmscpfs_query_reused_with_another_character_set(wlmscpfs: Wlmscpfs) -> None:
    """One query object reused: first in UTF-8 for the UTF-8 entry, then switched
    to ISO_IR 100 with a Latin-1 step key for the Latin-1 entry (wlmscpfs
    matches bytes, so each query must be in the file's character set). The
    second query's step item must go out in ISO_IR 100 too."""
    query = wl_query("ISO_IR 192", step={"ScheduledPerformingPhysicianName": "Gößmann*"})
    with connect(wlmscpfs.port, wlmscpfs.aet) as assoc:
        first, _ = find_all(assoc, query)
        assert ids(first) == {"WL-YAMADA"}
        query.SpecificCharacterSet = "ISO_IR 100"
        query.ScheduledProcedureStepSequence[0].ScheduledPerformingPhysicianName = "Schäfer*"
        second, _ = find_all(assoc, query)
    assert ids(second) == {"WL-MUELLER"}
    assert b"Sch\xe4fer*" in bytes(query.encode(EXPLICIT))


def test_wlmscpfs_sequence_return_keys(wlmscpfs: Wlmscpfs) -> None:
    """Sequence return keys (PS3.4 C.2.2.2.6): an empty item asks for the
    sequence's attributes, a zero-length sequence for the sequence; answers
    carry each file's items -- two, one or none -- with their values."""
    query = item(PatientID=None, RequestedProcedureCodeSequence=[Dataset()],
                 ReferencedStudySequence=None, ScheduledProcedureStepSequence=[Dataset()])
    with connect(wlmscpfs.port, wlmscpfs.aet) as assoc:
        found, _ = find_all(assoc, query)
    assert ids(found) == set(wlmscpfs.sources)
    for ds in found:
        source = wlmscpfs.sources[str(ds.PatientID)]
        assert codes(ds) == codes(source), ds.PatientID
        for code in ds.get("RequestedProcedureCodeSequence") or []:
            # wlmscpfs's expansion of the empty item adds this (empty) key.
            assert code.get("CodingSchemeVersion") in ("", None)
        [ref] = ds.ReferencedStudySequence
        assert ref.ReferencedSOPInstanceUID == source.StudyInstanceUID
        assert ref.ReferencedSOPClassUID == STUDY_CLASS
        [step], [source_step] = ds.ScheduledProcedureStepSequence, source.ScheduledProcedureStepSequence
        for key in (*STEP_KEYS, "ScheduledStationName", "ScheduledProcedureStepLocation"):
            assert text(step.get(key)) == text(source_step.get(key)), key


def test_wlmscpfs_no_match_and_refusals_keep_the_association(wlmscpfs: Wlmscpfs) -> None:
    """No matching entry: no Pending response, final Success, ``matches`` 0.
    A key wlmscpfs does not support: its answers come as Pending 0xFF01 and are
    matches all the same. Two items in the step sequence: 0xA900 with its
    ErrorComment, raised. The association carries every next query."""
    with connect(wlmscpfs.port, wlmscpfs.aet) as assoc:
        result = assoc.find(wl_query(PatientID="NOBODY"), model="worklist")
        assert list(result) == []
        assert result.status == SUCCESS and result.done and result.matches == 0

        unsupported, _ = find_all(assoc, item(PatientID=None, StudyDescription=None))   # not a worklist key
        assert ids(unsupported) == set(wlmscpfs.sources)

        result = assoc.find(item(PatientID=None, ScheduledProcedureStepSequence=[item(Modality="CT"),
                                                                                 item(Modality="MR")]),
                            model="worklist")
        with pytest.raises(DimseStatusError) as info:
            list(result)
        assert info.value.status == IDENTIFIER_DOES_NOT_MATCH == result.status
        assert info.value.comment == result.error_comment == "More than 1 item in sequence."
        assert result.done and result.matches == 0

        assert assoc.echo() == SUCCESS
        again = assoc.find(wl_query(PatientID="WL-SMITH"), model="worklist")
        assert ids(list(again)) == {"WL-SMITH"} and again.status == SUCCESS


def test_wlmscpfs_rejects_an_unknown_called_ae(wlmscpfs: Wlmscpfs) -> None:
    """A called AE title without a worklist folder: A-ASSOCIATE-RJ, rejected
    permanent by the service-user, called AE title not recognized (PS3.8 9.3.4)."""
    with pytest.raises(AssociationRejected) as info:
        connect(wlmscpfs.port, "NOSUCHAE")
    assert (info.value.result, info.value.source, info.value.reason) == (1, 1, 7)


QUERY_DUMP = """\
(0008,0005) CS [ISO_IR 100]
(0010,0010) PN []
(0010,0020) LO []
(0032,1064) SQ
(fffe,e000) -
(fffe,e00d) -
(fffe,e0dd) -
(0040,0100) SQ
(fffe,e000) -
(0008,0060) CS [CT]
(0040,0002) DA []
(0040,0006) PN []
(fffe,e00d) -
(fffe,e0dd) -
"""


@pytest.mark.parametrize("options, context", [
    ([], IMPLICIT), (["-e"], EXPLICIT), (["-e", "+ti"], EXPLICIT),
], ids=["explicit-lengths-to-implicit", "undefined-lengths", "implicit-file-to-explicit"])
def test_wlmscpfs_query_files_from_dump2dcm(wlmscpfs: Wlmscpfs, tmp_path: Path, options: list[str],
                                            context: str) -> None:
    """dcmtk-style query files (dump2dcm, defined or undefined lengths,
    explicit or implicit VR) read with ``read_file`` and sent as they are, then
    edited in place -- a key in the step item and one at the top level -- and
    sent again, in a syntax other than the file's where the parameters say so."""
    dump = tmp_path / "query.dump"
    dump.write_text(QUERY_DUMP)
    made = run_tool("dump2dcm", *options, str(dump), str(tmp_path / "query.dcm"))
    assert made.returncode == 0 and not made.errors, made.output
    query = read_file(tmp_path / "query.dcm")
    assert query.transfer_syntax == (IMPLICIT if "+ti" in options else EXPLICIT)
    with connect(wlmscpfs.port, wlmscpfs.aet, contexts=[(WORKLIST, [context])]) as assoc:
        found, _ = find_all(assoc, query)
        assert ids(found) == {"WL-SMITH", "WL-MUELLER"}
        for ds in found:
            source = wlmscpfs.sources[str(ds.PatientID)]
            assert codes(ds) == codes(source)
            assert text(ds.ScheduledProcedureStepSequence[0].ScheduledPerformingPhysicianName) == text(
                source.ScheduledProcedureStepSequence[0].ScheduledPerformingPhysicianName)
        query.ScheduledProcedureStepSequence[0].Modality = "MR"
        query.PatientName = "Sm*"
        edited, _ = find_all(assoc, query)
        assert ids(edited) == {"WL-SMYTHE"}
        assert codes(edited[0]) == codes(wlmscpfs.sources["WL-SMYTHE"])


# -------------------------------------------------------- Orthanc worklists
@pytest.fixture(scope="module")
def orthanc_worklists(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Orthanc, dict[str, Dataset]]]:
    """Orthanc with the ModalityWorklists plugin reading ``ENTRIES`` (UTF-8 answers)."""
    require("Orthanc")
    plugin = Path("/usr/share/orthanc/plugins/libModalityWorklists.so")
    if not plugin.exists():
        pytest.skip(f"Orthanc's worklist plugin is not installed ({plugin})")
    folder = tmp_path_factory.mktemp("orthanc-wl")
    sources = write_worklist(folder)
    (folder / "not-a-worklist.dcm").write_bytes((folder / "entry1.wl").read_bytes())   # ignored: not *.wl
    config = {"Plugins": [str(plugin)], "Worklists": {"Enable": True, "Database": str(folder)},
              "DicomAlwaysAllowFindWorklist": True, "DefaultEncoding": "Utf8"}
    with Orthanc(config=config) as peer:
        yield peer, sources


def test_orthanc_worklist_matching(orthanc_worklists: tuple[Orthanc, dict[str, Dataset]]) -> None:
    """Universal, step-item (Modality, date range, station), PatientName
    wildcard and no-match queries: exactly the expected entries with the
    files' values (UTF-8 answers: Orthanc converts the Latin-1 files)."""
    orthanc, sources = orthanc_worklists
    cases: list[tuple[Dataset, set[str]]] = [
        (wl_query(), set(sources)),
        (wl_query(step={"Modality": "CT"}), {"WL-SMITH", "WL-MUELLER"}),
        (wl_query(step={"ScheduledProcedureStepStartDate": "20240311-20240316"}), {"WL-SMYTHE", "WL-MUELLER"}),
        (wl_query(step={"ScheduledStationAETitle": "MR01"}), {"WL-SMYTHE"}),
        (wl_query(step={"Modality": "CT", "ScheduledPerformingPhysicianName": "House*"}), {"WL-SMITH"}),
        (wl_query(PatientName="Sm?th*"), {"WL-SMITH", "WL-SMYTHE"}),
        (wl_query(PatientName="NOBODY"), set()),
    ]
    with connect(orthanc.dicom_port, orthanc.aet) as assoc:
        for query, expected in cases:
            found, _ = find_all(assoc, query)
            assert ids(found) == expected, query
            assert {view(ds) for ds in found} == views(sources, *expected), query
            assert all(ds.get("SpecificCharacterSet") == "ISO_IR 192" for ds in found)


def test_orthanc_worklist_non_ascii_and_sequences(orthanc_worklists: tuple[Orthanc, dict[str, Dataset]]) -> None:
    """A UTF-8 query for the UTF-8 entry and for the Latin-1 one (Orthanc
    converts); the code sequence's empty item comes back with each file's items."""
    orthanc, sources = orthanc_worklists
    with connect(orthanc.dicom_port, orthanc.aet) as assoc:
        utf8, _ = find_all(assoc, wl_query("ISO_IR 192", PatientName="*山田*"))
        latin, _ = find_all(assoc, wl_query("ISO_IR 192", PatientName="Mü*"))
        found, _ = find_all(assoc, item(PatientID=None, RequestedProcedureCodeSequence=[Dataset()]))
    assert [str(m.PatientName) for m in utf8] == ["Yamada^Tarou=山田^太郎=やまだ^たろう"]
    assert [str(m.PatientName) for m in latin] == ["Müller^Anna"]
    assert view(utf8[0]) == view(sources["WL-YAMADA"]) and view(latin[0]) == view(sources["WL-MUELLER"])
    assert {str(ds.PatientID): codes(ds) for ds in found} == {pid: codes(ds) for pid, ds in sources.items()}


# ------------------------------------------------------ pynetdicom worklist SCP
_PYNETDICOM_SCP = r'''
import json, sys, time
from pathlib import Path
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.dsutils import encode
from pynetdicom.sop_class import ModalityWorklistInformationFind, Verification

port, aet, folder = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
entries = [dcmread(p) for p in sorted(folder.glob("*.wl"))]
requests = folder / "requests"
requests.mkdir()

def on_find(event):
    identifier = event.identifier
    n = len(list(requests.glob("*.dcm")))
    # What pydicom decoded: as JSON (its text values), and encoded again in
    # Explicit VR LE, for the test to compare.
    (requests / f"{n:03d}.json").write_text(json.dumps(identifier.to_json_dict()))
    (requests / f"{n:03d}.dcm").write_bytes(encode(identifier, False, True))
    mode = identifier.get("PatientID", "")
    if mode == "REFUSE":
        status = Dataset()
        status.Status = 0xA900
        status.ErrorComment = "no such worklist here"
        yield status, None
        return
    if mode == "MANY":
        for i in range(400):
            if event.is_cancelled:
                (folder / "cancelled").write_text(str(i))
                yield 0xFE00, None
                return
            time.sleep(0.005)
            yield 0xFF00, entries[i % len(entries)]
        return
    for ds in entries:
        yield (0xFF01 if mode == "PARTIAL" else 0xFF00), ds

ae = AE(ae_title=aet)
ae.add_supported_context(Verification)
ae.add_supported_context(ModalityWorklistInformationFind, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_FIND, on_find)])
print("READY", flush=True)
while True:
    time.sleep(3600)
'''


class PynetdicomWorklistSCP(_Process):
    """A pynetdicom AE serving the worklist SOP class in its own process, with
    the fixed data sets of ``ENTRIES`` (read with pydicom from their files).

    Its C-FIND handler saves each Identifier it decoded as ``requests/NNN.json``
    (pydicom's JSON model) and ``requests/NNN.dcm`` (re-encoded by pydicom in
    Explicit VR LE), and answers by the query's
    PatientID: ``REFUSE`` -> 0xA900 with an ErrorComment; ``PARTIAL`` -> every
    entry with 0xFF01; ``MANY`` -> up to 400 answers, 5 ms apart, stopping
    with Cancel once a C-CANCEL came (and writing ``cancelled``); anything
    else -> every entry with 0xFF00 (no matching: fixed answers).
    """

    kind = "pynetdicom"
    name = "pynetdicom-wl"

    def __init__(self, aet: str = "PYNETWL", timeout: float = START_TIMEOUT) -> None:
        super().__init__()
        self.aet, self.timeout = aet, timeout
        self.port = 0
        self.sources: dict[str, Dataset] = {}
        self.folder = Path()

    def start(self) -> None:
        require("pynetdicom")
        d = self._mkdir()
        self.folder = d / "wl"
        self.sources = write_worklist(self.folder)
        self.port = free_port()
        (d / "scp.py").write_text(_PYNETDICOM_SCP)
        self._spawn([sys.executable, str(d / "scp.py"), str(self.port), self.aet, str(self.folder)])
        self._wait_until(lambda: "READY" in self.log_path.read_text() and port_accepts(self.port), self.timeout)

    def requests(self) -> list[Dataset]:
        """The Identifiers received so far, as pydicom decoded and re-encoded them."""
        return [read_dataset(p.read_bytes(), transfer_syntax=EXPLICIT)
                for p in sorted((self.folder / "requests").glob("*.dcm"))]

    def requests_json(self) -> list[dict[str, Any]]:
        """The Identifiers received so far in pydicom's DICOM JSON model (its decoded text)."""
        return [json.loads(p.read_text()) for p in sorted((self.folder / "requests").glob("*.json"))]

    def clear(self) -> None:
        for p in (self.folder / "requests").iterdir():
            p.unlink()
        (self.folder / "cancelled").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def pynetdicom_wl() -> Iterator[PynetdicomWorklistSCP]:
    with PynetdicomWorklistSCP() as peer:
        yield peer


@pytest.fixture
def pyscp(pynetdicom_wl: PynetdicomWorklistSCP) -> PynetdicomWorklistSCP:
    pynetdicom_wl.clear()
    return pynetdicom_wl


@pytest.mark.parametrize("syntax, charset, name, physician", [
    (EXPLICIT, "ISO_IR 192", "Mü*", "Gößmann*"),
    (IMPLICIT, "ISO_IR 100", "Mü*", "Schäfer*"),
    (EXPLICIT, ["", "ISO 2022 IR 87"], "*山田*", "やまだ^*"),          # JIS X 0208 with code extensions
], ids=["utf8-explicit", "latin1-implicit", "iso2022-japanese"])
def test_pynetdicom_scp_receives_the_query_intact_and_answers_decode(
        pyscp: PynetdicomWorklistSCP, syntax: str, charset: str | list[str], name: str, physician: str) -> None:
    """A query with non-ASCII wildcards (top level and in the step item, in
    UTF-8, Latin-1 or ISO 2022 JIS), a step item (Modality=CT, a date range,
    empty return keys) and an empty-item sequence: pydicom decodes exactly
    what we meant; its answers (undefined-length sequences, Latin-1 and UTF-8
    entries) decode to the files' values."""
    query = wl_query(charset, step={"Modality": "CT", "ScheduledProcedureStepStartDate": "20240301-20240331",
                                    "ScheduledPerformingPhysicianName": physician},
                     PatientName=name, RequestedProcedureCodeSequence=[Dataset()])
    with connect(pyscp.port, pyscp.aet, contexts=[(WORKLIST, [syntax])]) as assoc:
        found, result = find_all(assoc, query)
    [received] = pyscp.requests()
    assert received == sent(query, syntax)
    assert str(received.PatientName) == name and received.SpecificCharacterSet == charset
    [as_json] = pyscp.requests_json()          # pydicom's own decoding of the text
    assert as_json["00100010"]["Value"] == [{"Alphabetic": name}]
    [step_json] = as_json["00400100"]["Value"]
    assert step_json["00400006"]["Value"] == [{"Alphabetic": physician}]
    assert step_json["00080060"]["Value"] == ["CT"]
    [step] = received.ScheduledProcedureStepSequence
    assert (step.Modality, step.ScheduledProcedureStepStartDate) == ("CT", "20240301-20240331")
    assert str(step.ScheduledPerformingPhysicianName) == physician
    assert [len(code) for code in received.RequestedProcedureCodeSequence] == [0]
    assert len(found) == result.matches == len(ENTRIES)
    assert [view(ds) for ds in found] == [view(pyscp.sources[pid]) for pid in
                                          ("WL-SMITH", "WL-SMYTHE", "WL-MUELLER", "WL-YAMADA")]
    assert [codes(ds) for ds in found] == [codes(ds) for ds in pyscp.sources.values()]
    assert [ds.SpecificCharacterSet for ds in found] == [e[0] for e in ENTRIES]


def test_pynetdicom_scp_pending_optional_keys_status(pyscp: PynetdicomWorklistSCP) -> None:
    """Pending 0xFF01 ("optional keys not supported", PS3.4 K.4.1.1.4) is a
    match like 0xFF00: every answer delivered, final Success."""
    with connect(pyscp.port, pyscp.aet) as assoc:
        found, result = find_all(assoc, wl_query(PatientID="PARTIAL"))
    assert ids(found) == set(pyscp.sources) and result.matches == len(ENTRIES)


def test_pynetdicom_scp_failure_status_raises_and_keeps_the_association(pyscp: PynetdicomWorklistSCP) -> None:
    """0xA900 (Identifier does not match SOP Class) with an ErrorComment:
    DimseStatusError carrying both; the association carries the next query."""
    with connect(pyscp.port, pyscp.aet) as assoc:
        result = assoc.find(wl_query(PatientID="REFUSE"), model="worklist")
        with pytest.raises(DimseStatusError) as info:
            list(result)
        assert info.value.status == IDENTIFIER_DOES_NOT_MATCH == result.status
        assert info.value.comment == "no such worklist here"
        assert result.done and result.matches == 0
        assert assoc.echo() == SUCCESS
        found, _ = find_all(assoc, wl_query())
        assert len(found) == len(ENTRIES)


def test_pynetdicom_scp_cancel(pyscp: PynetdicomWorklistSCP) -> None:
    """Leaving the loop after the first answer sends C-CANCEL: pynetdicom's
    handler sees it, stops early and answers Cancel; the association goes on."""
    with connect(pyscp.port, pyscp.aet) as assoc:
        result = assoc.find(wl_query(PatientID="MANY"), model="worklist")
        for _ in result:
            break
        assert result.done and result.cancelled
        assert result.status == CANCEL and 1 <= result.matches < 400
        assert assoc.echo() == SUCCESS
        found, _ = find_all(assoc, wl_query())
        assert len(found) == len(ENTRIES)
    stopped_at = int((pyscp.folder / "cancelled").read_text())
    assert 1 <= stopped_at < 400 and result.matches <= stopped_at


# ---------------------------------------------------- peers -> our Server
_DATE_VRS = frozenset({"DA", "TM", "DT"})


def _value_matches(values: Any, key: Any, vr: str) -> bool:
    """One attribute: universal (empty key), a range for DA/TM/DT, ``*``/``?``
    wildcards, else single value (any of a multi-valued attribute's values)."""
    key = text(key)
    if not key:
        return True
    candidates = [text(v) for v in values] if isinstance(values, list) else [text(values)]
    if vr in _DATE_VRS and "-" in key:
        low, high = key.split("-", 1)
        return any((not low or low <= v) and (not high or v <= high) for v in candidates if v)
    if "*" in key or "?" in key:
        pattern = re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in key) + r"\Z",
                             re.S)
        return any(pattern.match(v) for v in candidates)
    return key in candidates


def entry_matches(entry: Dataset, query: Dataset) -> bool:
    """Whether ``entry`` matches every key of ``query`` (PS3.4 C.2.2.2); a
    sequence key matches when one of the entry's items matches its item."""
    for element in query:
        if element.tag == 0x00080005:                  # Specific Character Set: not a key
            continue
        if element.VR == "SQ":
            wanted = element.value[0] if element.value else None
            if wanted is None or not has_matching_keys(wanted):
                continue                               # a return key only
            items = entry.get(element.tag)
            if not any(entry_matches(e, wanted) for e in (items.value if items is not None else [])):
                return False
            continue
        own = entry.get(element.tag)
        if not _value_matches(own.value if own is not None else None, element.value, element.VR):
            return False
    return True


def has_matching_keys(query: Dataset) -> bool:
    """Whether ``query`` (an item) holds a key with a value to match."""
    return any(has_matching_keys(e.value[0]) if e.VR == "SQ" and e.value else bool(text(e.value))
               for e in query if e.VR != "SQ" or e.value)


def answer(entry: Dataset, query: Dataset) -> Dataset:
    """The Identifier answering ``query`` from ``entry``: each requested key
    with the entry's value (empty if it has none); an empty sequence item asks
    for the items in full. Specific Character Set: the entry's."""
    out = Dataset()
    out.SpecificCharacterSet = entry.SpecificCharacterSet
    for element in query:
        if element.tag == 0x00080005:
            continue
        own = entry.get(element.tag)
        if element.VR == "SQ":
            items = own.value if own is not None else []
            wanted = element.value[0] if element.value else Dataset()
            out.set(element.tag, [answer_item(e, wanted) for e in items], "SQ")
        else:
            out.set(element.tag, own.value if own is not None else None, element.VR)
    return out


def answer_item(entry_item: Dataset, wanted: Dataset) -> Dataset:
    if len(wanted) == 0:
        wanted = entry_item                            # every attribute of the item
    out = Dataset()
    for element in wanted:
        own = entry_item.get(element.tag)
        if own is not None and own.VR == "SQ":
            out.set(element.tag, [answer_item(e, Dataset()) for e in own.value], "SQ")
        else:
            out.set(element.tag, own.value if own is not None else None, element.VR)
    return out


class WorklistHandler:
    """Our Server's worklist SCP: matches the entries, records each query,
    what it answered and whether it was cancelled. ``delay``: seconds before
    each answer but the first; ``repeat``: passes over the entries; ``status``:
    the Pending status of the answers."""

    def __init__(self, entries: list[Dataset], delay: float = 0.0, repeat: int = 1, status: int = PENDING) -> None:
        self.entries = entries
        self.delay, self.repeat, self.status = delay, repeat, status
        self.queries: list[tuple[Any, Dataset]] = []
        self.cancelled: list[bool] = []
        self.answered: list[Dataset] = []

    def on_find(self, ctx: Any, query: Dataset) -> Iterator[Dataset | tuple[int, Dataset]]:
        self.queries.append((ctx, query))
        try:
            for _ in range(self.repeat):
                for entry in self.entries:
                    if ctx.cancelled:
                        return
                    if entry_matches(entry, query):
                        if self.answered and self.delay:
                            time.sleep(self.delay)
                        rsp = answer(entry, query)
                        self.answered.append(rsp)
                        yield rsp if self.status == PENDING else (self.status, rsp)
        finally:
            self.cancelled.append(ctx.cancelled)


@pytest.fixture
def entries(tmp_path: Path) -> dict[str, Dataset]:
    return write_worklist(tmp_path / "wl")


FINDSCU_KEYS = [
    "PatientName", "PatientID", "AccessionNumber", "StudyInstanceUID",
    "ScheduledProcedureStepSequence[0].Modality=CT",
    "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate=20240301-20240331",
    "ScheduledProcedureStepSequence[0].ScheduledStationAETitle",
    "ScheduledProcedureStepSequence[0].ScheduledPerformingPhysicianName",
]


def test_findscu_worklist_to_our_server(our_server: Callable[..., Server], entries: dict[str, Dataset],
                                        tmp_path: Path) -> None:
    """findscu -W with a step item (Modality=CT, a date range): the query
    reaches our handler intact, and findscu extracts (-X) every match, equal
    to what the handler answered."""
    handler = WorklistHandler(list(entries.values()))
    srv = our_server("WLSCP", handler)
    out = tmp_path / "rsp"
    out.mkdir()
    result = findscu(srv.port, "WLSCP", FINDSCU_KEYS, "-X", "-od", str(out), "-v", model="-W")
    assert result.ok, result.output
    [(ctx, query)] = handler.queries
    assert ctx.abstract_syntax == WORKLIST and ctx.calling_ae == "FINDSCU"
    [step] = query.ScheduledProcedureStepSequence
    assert (step.Modality, step.ScheduledProcedureStepStartDate) == ("CT", "20240301-20240331")
    assert "ScheduledStationAETitle" in step and text(step.ScheduledStationAETitle) == ""
    assert str(query.PatientName) == "" and "AccessionNumber" in query
    assert ids(handler.answered) == {"WL-SMITH", "WL-MUELLER"}
    extracted = sorted(out.iterdir())
    assert [p.name for p in extracted] == ["rsp0001.dcm", "rsp0002.dcm"]
    for path, answered in zip(extracted, handler.answered):
        assert read_file(path) == answered
    assert len(re.findall(r"Received Find Response \d+ \(Pending\)", result.output)) == 2
    assert "Received Final Find Response (Success)" in result.output
    assert handler.cancelled == [False]


def test_findscu_query_file_with_empty_item_and_utf8(our_server: Callable[..., Server],
                                                     entries: dict[str, Dataset], tmp_path: Path) -> None:
    """A query file made by dump2dcm: UTF-8 (ISO_IR 192) with a non-ASCII
    wildcard, an empty Requested Procedure Code item and an empty step item:
    our handler gets them as sent, and findscu the full items back."""
    require("dump2dcm")
    dump = tmp_path / "query.dump"
    dump.write_text(
        "(0008,0005) CS [ISO_IR 192]\n"
        "(0010,0010) PN [*山田*]\n"
        "(0010,0020) LO []\n"
        "(0032,1064) SQ\n(fffe,e000) -\n(fffe,e00d) -\n(fffe,e0dd) -\n"
        "(0040,0100) SQ\n(fffe,e000) -\n(fffe,e00d) -\n(fffe,e0dd) -\n", encoding="utf-8")
    query_file = tmp_path / "query.dcm"
    made = run_tool("dump2dcm", str(dump), str(query_file))
    assert made.ok, made.output
    handler = WorklistHandler(list(entries.values()))
    srv = our_server("WLSCP", handler)
    out = tmp_path / "rsp"
    out.mkdir()
    result = run_tool("findscu", "-aet", "FINDSCU", "-aec", "WLSCP", "-W", "-X", "-od", str(out),
                      HOST, str(srv.port), str(query_file))
    assert result.ok, result.output
    [(_, query)] = handler.queries
    assert query.SpecificCharacterSet == "ISO_IR 192" and str(query.PatientName) == "*山田*"
    assert [len(i) for i in query.RequestedProcedureCodeSequence] == [0]
    assert [len(i) for i in query.ScheduledProcedureStepSequence] == [0]
    [path] = sorted(out.iterdir())
    got = read_file(path)
    assert got == handler.answered[0]
    assert str(got.PatientName) == "Yamada^Tarou=山田^太郎=やまだ^たろう" and got.SpecificCharacterSet == "ISO_IR 192"
    source = entries["WL-YAMADA"]
    [step], [source_step] = got.ScheduledProcedureStepSequence, source.ScheduledProcedureStepSequence
    assert step == source_step
    assert codes(got) == [] and "RequestedProcedureCodeSequence" in got


class ConvertingHandler(WorklistHandler):
    """Answers in the query's character set (as Orthanc converts to its own):
    the top-level values copied as text, the step sequence taken over from the
    entry as it is."""

    def on_find(self, ctx: Any, query: Dataset) -> Iterator[Dataset]:
        self.queries.append((ctx, query))
        for entry in self.entries:
            if entry_matches(entry, query):
                rsp = item(SpecificCharacterSet=query.SpecificCharacterSet, PatientName=entry.PatientName,
                           PatientID=entry.PatientID,
                           ScheduledProcedureStepSequence=entry.ScheduledProcedureStepSequence)
                self.answered.append(rsp)
                yield rsp


def test_findscu_utf8_answer_with_items_from_a_latin1_entry(our_server: Callable[..., Server],
                                                           entries: dict[str, Dataset], tmp_path: Path) -> None:
    """A UTF-8 query; the handler answers in UTF-8 from the Latin-1 entry,
    taking its step sequence over: the step's Latin-1 text must go out in
    UTF-8 (PS3.3 C.12.1.1.2: the item has the enclosing data set's character
    set), and the entry itself must still read as before."""
    handler = ConvertingHandler(list(entries.values()))
    srv = our_server("WLSCP", handler)
    out = tmp_path / "rsp"
    out.mkdir()
    keys = ["SpecificCharacterSet=ISO_IR 192", "PatientName=Mü*", "PatientID",
            "ScheduledProcedureStepSequence[0].ScheduledPerformingPhysicianName"]
    result = findscu(srv.port, "WLSCP", keys, "-X", "-od", str(out), model="-W")
    assert result.ok, result.output
    [(_, query)] = handler.queries
    assert str(query.PatientName) == "Mü*"
    [path] = sorted(out.iterdir())
    got = read_file(path)
    assert (got.SpecificCharacterSet, str(got.PatientName)) == ("ISO_IR 192", "Müller^Anna")
    assert str(got.ScheduledProcedureStepSequence[0].ScheduledPerformingPhysicianName) == "Schäfer^Jürgen"
    entry_step = entries["WL-MUELLER"].ScheduledProcedureStepSequence[0]
    assert str(entry_step.ScheduledPerformingPhysicianName) == "Schäfer^Jürgen"


def _pynetdicom_find(port: int, query: Dataset, *, cancel_after: int | None = None) -> list[tuple[int, Any]]:
    """pynetdicom (in this process) as the worklist SCU: (status, identifier) of every response."""
    require("pynetdicom")
    from pynetdicom import AE
    from pynetdicom.dsutils import decode

    ae = AE(ae_title="PYNETSCU")
    ae.add_requested_context(WORKLIST, [EXPLICIT])
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    py_query = decode(BytesIO(bytes(query.encode(EXPLICIT))), False, True)   # pydicom reads our bytes
    assoc = ae.associate(HOST, port, ae_title="WLSCP")
    assert assoc.is_established
    record_started("pynetdicom")
    out: list[tuple[int, Any]] = []
    try:
        for status, identifier in assoc.send_c_find(py_query, WORKLIST, msg_id=7):
            assert status is not None, "pynetdicom got no (valid) response"
            out.append((int(status.Status), identifier))
            if cancel_after is not None and len(out) == cancel_after:
                assoc.send_c_cancel(7, query_model=WORKLIST)
    finally:
        assoc.release()
    return out


@pytest.mark.parametrize("status", [PENDING, PENDING_OPTIONAL], ids=["pending", "pending-optional-keys"])
def test_pynetdicom_scu_worklist_to_our_server(our_server: Callable[..., Server], entries: dict[str, Dataset],
                                               status: int) -> None:
    """pynetdicom's send_c_find with a step item (Modality=CT) and an empty
    code item: the query reaches our handler intact; each answer comes with
    the Pending status the handler gave (0xFF00 or 0xFF01) and pydicom decodes
    it to the handler's values; final Success without an Identifier."""
    handler = WorklistHandler(list(entries.values()), status=status)
    srv = our_server("WLSCP", handler)
    query = wl_query("ISO_IR 100", step={"Modality": "CT"}, RequestedProcedureCodeSequence=[Dataset()])
    responses = _pynetdicom_find(srv.port, query)
    [(ctx, received)] = handler.queries
    assert received == sent(query) and ctx.message_id == 7 and ctx.calling_ae == "PYNETSCU"
    assert received.ScheduledProcedureStepSequence[0].Modality == "CT"
    assert [s for s, _ in responses] == [status, status, SUCCESS]
    got = [read_dataset(_py_encode(ds), transfer_syntax=EXPLICIT) for _, ds in responses[:-1]]
    assert got == handler.answered
    assert ids(got) == {"WL-SMITH", "WL-MUELLER"}
    assert {str(ds.PatientName) for ds in got} == {"Smith^John", "Müller^Anna"}
    assert [codes(ds) for ds in got] == [codes(entries[str(ds.PatientID)]) for ds in got]
    assert responses[-1][1] is None


def _py_encode(ds: Any) -> bytes:
    """A pydicom data set as pydicom encodes it in Explicit VR LE."""
    from pynetdicom.dsutils import encode

    return bytes(encode(ds, False, True))


def test_pynetdicom_scu_cancel_to_our_server(our_server: Callable[..., Server],
                                             entries: dict[str, Dataset]) -> None:
    """pynetdicom sends C-CANCEL after the second answer: our handler sees
    ``ctx.cancelled``, no more answers follow beyond those under way, and the
    final status is Cancel (0xFE00)."""
    handler = WorklistHandler(list(entries.values()), delay=0.005, repeat=100)   # up to 400 answers, 2 s
    srv = our_server("WLSCP", handler)
    responses = _pynetdicom_find(srv.port, wl_query(), cancel_after=2)
    statuses = [s for s, _ in responses]
    assert statuses[-1] == CANCEL and set(statuses[:-1]) == {PENDING}
    assert 2 <= len(statuses) - 1 < 400
    assert handler.cancelled == [True]
    assert len(statuses) - 1 == len(handler.answered)
