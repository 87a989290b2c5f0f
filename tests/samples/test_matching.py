"""dicomnet.samples.matching: the PS3.4 C.2.2.2 matching rules and C.4 identifiers, case by case."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dicomnet
from dicomnet.dicom.dataset import Dataset, Sequence, tag_of
from dicomnet.dicom.dictionary import lookup
from dicomnet.errors import QueryError
from dicomnet.samples.matching import _wildcard, compile_query, required_unique_keys


def query(**keys):
    ds = Dataset()
    for keyword, value in keys.items():
        ds.set(keyword, value)
    return ds


def record(**values):
    return {tag_of(k): (lookup(tag_of(k)).vrs[0], v) for k, v in values.items()}


def matches(q: Dataset, rec: dict, **options) -> bool:
    return compile_query(q, **options).matches(rec)


# ---------------------------------------------------------- C.2.2.2.1 single value
def test_single_value_is_exact_and_case_sensitive_except_pn():
    assert matches(query(StudyDescription="CT HEAD"), record(StudyDescription="CT HEAD"))
    assert not matches(query(StudyDescription="CT HEAD"), record(StudyDescription="ct head"))
    assert not matches(query(StudyDescription="CT"), record(StudyDescription="CT HEAD"))
    # PN: the standard allows case-insensitive literal matching; ours by default.
    assert matches(query(PatientName="smith^john"), record(PatientName="Smith^John"))
    assert not matches(query(PatientName="smith^john"), record(PatientName="Smith^John"), pn_case_sensitive=True)
    assert matches(query(PatientName="Smith^John"), record(PatientName="Smith^John"), pn_case_sensitive=True)


def test_pn_key_without_groups_matches_any_component_group():
    rec = record(PatientName="Yamada^Tarou=山田^太郎=やまだ^たろう")
    assert matches(query(PatientName="Yamada^Tarou"), rec)
    assert matches(query(PatientName="山田^太郎"), rec)
    assert not matches(query(PatientName="Yamada^Hanako"), rec)


def test_attribute_missing_from_the_record_does_not_match_a_value():
    assert not matches(query(StudyDescription="CT HEAD"), record(PatientID="1"))


def test_numbers_compare_as_numbers():
    assert matches(query(SeriesNumber=5), record(SeriesNumber=5))
    assert not matches(query(SeriesNumber=5), record(SeriesNumber=6))
    assert matches(query(SliceThickness=2.5), record(SliceThickness=2.5))


def test_multi_valued_attribute_matches_when_any_value_does():
    rec = record(ImageType=["ORIGINAL", "PRIMARY", "AXIAL"], ModalitiesInStudy=["CT", "PT"])
    assert matches(query(ImageType="PRIMARY"), rec)
    assert not matches(query(ImageType="SECONDARY"), rec)
    # Several key values: any one of them (Modalities in Study "MR\PT").
    assert matches(query(ModalitiesInStudy=["MR", "PT"]), rec)
    assert not matches(query(ModalitiesInStudy=["MR", "US"]), rec)


# ---------------------------------------------------------- C.2.2.2.2 list of UIDs
def test_list_of_uid_matching():
    q = query(SOPInstanceUID=["1.2.3", "1.2.4"])
    assert matches(q, record(SOPInstanceUID="1.2.4"))
    assert matches(q, record(SOPInstanceUID="1.2.3"))
    assert not matches(q, record(SOPInstanceUID="1.2.5"))
    assert not matches(q, record(SOPInstanceUID="1.2.34"))


# ---------------------------------------------------------- C.2.2.2.3 universal
def test_universal_matching_on_empty_key_and_lone_asterisk():
    assert matches(query(PatientName="", StudyDate="", SeriesNumber=None), record(PatientID="x"))
    assert matches(query(PatientName="*"), record(PatientID="x"))        # C.2.2.2.4 note
    assert compile_query(query(PatientName="", StudyDate="")).keys == []


def test_empty_value_matching_with_two_quotation_marks():
    q = query(AccessionNumber='""')
    assert matches(q, record(AccessionNumber=""))
    assert matches(q, record(PatientID="1"))
    assert not matches(q, record(AccessionNumber="A1"))


# ---------------------------------------------------------- C.2.2.2.4 wild cards
def test_wild_cards_star_and_question_mark():
    assert matches(query(PatientName="Sm*"), record(PatientName="Smith^John"))
    assert matches(query(PatientName="*^John"), record(PatientName="Smith^John"))
    assert matches(query(PatientName="Sm?th*"), record(PatientName="Smyth^Ann"))
    assert not matches(query(PatientName="Sm?th*"), record(PatientName="Smiith^Ann"))
    assert matches(query(PatientName="sm*"), record(PatientName="Smith^John"))      # PN: insensitive
    assert not matches(query(StudyDescription="ct*"), record(StudyDescription="CT HEAD"))  # LO: sensitive
    assert matches(query(Modality="C?"), record(Modality="CT"))
    # "*" matches a zero-length run too.
    assert matches(query(StudyDescription="CT*HEAD"), record(StudyDescription="CTHEAD"))
    # Regex metacharacters in a key are literal.
    assert matches(query(StudyDescription="A.(b)+*"), record(StudyDescription="A.(b)+ more"))
    assert not matches(query(StudyDescription="A.(b)+*"), record(StudyDescription="AX(b)+"))


_ALPHABET = "aAb?*ß\n"


@settings(max_examples=3000, deadline=None)
@given(key=st.text(_ALPHABET, max_size=9), value=st.text("aAbß\n?*", max_size=12), fold=st.booleans())
def test_wild_cards_match_as_a_regular_expression_would(key, value, fold):
    # The reference: what the matcher was before, a regular expression
    # (exponential on many stars, which is why it is no longer used; fine on
    # inputs this small). Folded, both sides casefolded -- or the value as it
    # is: folding "ß" to "ss" must not take away the match of "?" (C.2.2.2.4).
    def regex(k: str, v: str) -> bool:
        pattern = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in k)
        return re.fullmatch(pattern, v, re.DOTALL) is not None

    expected = regex(key, value) or (fold and regex(key.casefold(), value.casefold()))
    assert _wildcard(key, fold)(value) == expected


def test_many_stars_do_not_backtrack():
    # A 23-character key took 13 s against one 40-character value with the
    # regular expression (and 12 stars, minutes), holding the GIL: one C-FIND
    # froze the whole server. Run apart, so that a regression fails instead
    # of hanging the suite.
    code = (
        "from dicomnet.samples.matching import _wildcard\n"
        "m = _wildcard('*A' * 30 + '*Z', False)\n"
        "assert not m('A' * 64)\n"
        "assert m('A' * 63 + 'Z')\n"
        "assert not _wildcard('*a?' * 30 + '*z', True)('A' * 64)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(dicomnet.__file__))))
    assert done.returncode == 0, done.stderr


def test_wild_cards_are_literal_in_other_vrs():
    # UI, DA, IS are not wild card VRs (C.2.2.2.4 lists AE CS LO LT PN SH ST UC UR UT).
    assert not matches(query(SOPInstanceUID="1.2.*"), record(SOPInstanceUID="1.2.3"))
    assert not matches(query(StudyDate="2020*"), record(StudyDate="20200101"))


# ---------------------------------------------------------- C.2.2.2.5 ranges
@pytest.mark.parametrize("key, value, expected", [
    ("20200101-20201231", "20200615", True),
    ("20200101-20201231", "20200101", True),     # inclusive
    ("20200101-20201231", "20201231", True),
    ("20200101-20201231", "20210101", False),
    ("-20200101", "19991231", True),
    ("-20200101", "20200102", False),
    ("20200101-", "20991231", True),
    ("20200101-", "20191231", False),
    ("20200101", "20200101", True),
    ("20200101-20201231", "", False),            # an empty value is not in any range
    ("2020.01.01-2020.12.31", "20200615", True),  # ACR-NEMA dotted dates
])
def test_date_ranges(key, value, expected):
    assert matches(query(StudyDate=key), record(StudyDate=value)) is expected


@pytest.mark.parametrize("key, value, expected", [
    ("1000-1100", "1030", True),
    ("1000-1100", "110059.9", True),     # "1100" bounds the minute 11:00
    ("1000-1100", "1101", False),
    ("1000-1100", "095959", False),
    ("-0800", "075959", True),
    ("1800-", "235959.999", True),
    ("10", "103000", True),              # a single partial time denotes its hour
    ("10", "113000", False),
])
def test_time_ranges(key, value, expected):
    assert matches(query(StudyTime=key), record(StudyTime=value)) is expected


def test_datetime_ranges_take_offsets_into_account_and_extend_partial_upper_bounds():
    q = query(AcquisitionDateTime="20200101-2020")
    assert matches(q, record(AcquisitionDateTime="20201231235959"))
    # C.2.2.2.5: the offset from UTC counts (the first is 2019-12-31 23:00 UTC)
    assert not matches(q, record(AcquisitionDateTime="20200101000000+0100"))
    assert matches(q, record(AcquisitionDateTime="20200101010000+0100"))
    assert not matches(q, record(AcquisitionDateTime="20210101"))
    assert matches(query(AcquisitionDateTime="-202001"), record(AcquisitionDateTime="20200131"))


def test_combined_date_time_range_only_when_negotiated():
    # C.2.2.2.5.2: 2020-01-01 18:00 through 2020-01-02 06:00.
    q = query(StudyDate="20200101-20200102", StudyTime="1800-0600")
    evening = record(StudyDate="20200101", StudyTime="2000")
    morning = record(StudyDate="20200102", StudyTime="0500")
    noon = record(StudyDate="20200101", StudyTime="1200")
    assert matches(q, evening, combined_datetime=True)
    assert matches(q, morning, combined_datetime=True)
    assert not matches(q, noon, combined_datetime=True)
    # Without the extended negotiation the keys are matched independently (an empty time range).
    assert not matches(q, evening)


# ---------------------------------------------------------- C.2.2.2.6 sequences
def _item(**values):
    ds = Dataset()
    for k, v in values.items():
        ds.set(k, v)
    return ds


def test_sequence_matching_one_item_any_record_item():
    q = query(ProcedureCodeSequence=[_item(CodeValue="CT123", CodeMeaning="")])
    rec = record(ProcedureCodeSequence=Sequence([_item(CodeValue="MR9", CodeMeaning="knee"),
                                                 _item(CodeValue="CT123", CodeMeaning="chest",
                                                       CodingSchemeDesignator="L")]))
    compiled = compile_query(q)
    assert compiled.matches(rec)
    assert not compile_query(query(ProcedureCodeSequence=[_item(CodeValue="US1")])).matches(rec)
    # The response carries the matching items with only the requested attributes.
    items = compiled.identifier(rec).ProcedureCodeSequence
    assert len(items) == 1
    assert items[0].CodeValue == "CT123" and items[0].CodeMeaning == "chest"
    assert "CodingSchemeDesignator" not in items[0]


def test_sequence_with_an_empty_item_is_universal_and_returns_everything():
    rec = record(ProcedureCodeSequence=Sequence([_item(CodeValue="A"), _item(CodeValue="B")]))
    compiled = compile_query(query(ProcedureCodeSequence=[Dataset()]))
    assert compiled.matches(record(PatientID="x"))
    assert [i.CodeValue for i in compiled.identifier(rec).ProcedureCodeSequence] == ["A", "B"]


def test_sequence_key_with_two_items_is_refused():
    with pytest.raises(QueryError):
        compile_query(query(ProcedureCodeSequence=[_item(CodeValue="A"), _item(CodeValue="B")]))


# ---------------------------------------------------------- C.4.1 levels and unique keys
@pytest.mark.parametrize("model, level", [("study", "PATIENT"), ("study", "FOO"), ("patient", ""),
                                          ("patient", "STUDIES")])
def test_bad_level_is_identifier_does_not_match_sop_class(model, level):
    with pytest.raises(QueryError) as info:
        compile_query(query(QueryRetrieveLevel=level, PatientID="1", StudyInstanceUID="1.2"), model)
    assert info.value.status == 0xA900


def test_missing_level_and_unknown_model():
    with pytest.raises(QueryError) as info:
        compile_query(query(PatientName="x"), "study")
    assert info.value.status == 0xA900
    with pytest.raises(QueryError):
        compile_query(query(QueryRetrieveLevel="STUDY"), "worklist")


@pytest.mark.parametrize("model, level, present, missing", [
    ("study", "SERIES", {}, "Study Instance UID"),
    ("study", "IMAGE", {"StudyInstanceUID": "1.2"}, "Series Instance UID"),
    ("patient", "STUDY", {}, "Patient ID"),
    ("patient", "IMAGE", {"PatientID": "P", "StudyInstanceUID": "1.2"}, "Series Instance UID"),
])
def test_hierarchical_query_needs_unique_keys_above(model, level, present, missing):
    q = query(QueryRetrieveLevel=level, **present)
    with pytest.raises(QueryError) as info:
        compile_query(q, model)
    assert info.value.status == 0xC000 and missing in str(info.value)
    compile_query(q, model, relational=True)   # negotiated relational queries need not


def test_unique_key_above_must_be_single_and_without_wild_cards():
    with pytest.raises(QueryError):
        compile_query(query(QueryRetrieveLevel="SERIES", StudyInstanceUID=["1.2", "1.3"]), "study")
    with pytest.raises(QueryError):
        compile_query(query(QueryRetrieveLevel="STUDY", PatientID="P*"), "patient")


def test_retrieve_needs_the_level_key_too_and_accepts_a_uid_list():
    assert required_unique_keys("study", "SERIES", retrieve=True) == (0x0020000D, 0x0020000E)
    assert required_unique_keys("patient", "STUDY") == (0x00100020,)
    with pytest.raises(QueryError):
        compile_query(query(QueryRetrieveLevel="STUDY"), "study", retrieve=True)
    compile_query(query(QueryRetrieveLevel="STUDY", StudyInstanceUID=["1.2", "1.3"]), "study", retrieve=True)


# ---------------------------------------------------------- C.4.1.1.3.2 response identifiers
def test_identifier_has_exactly_the_requested_keys_plus_level_and_unique_keys_above():
    rec = record(PatientID="P1", PatientName="Smith^John", StudyInstanceUID="1.2", SeriesInstanceUID="1.2.3",
                 Modality="CT", SeriesNumber=4, SeriesDescription="AXIAL", SpecificCharacterSet="ISO_IR 100")
    q = query(QueryRetrieveLevel="SERIES", PatientID="P1", StudyInstanceUID="1.2", Modality="",
              SeriesInstanceUID="", SeriesNumber=None, BodyPartExamined="")
    compiled = compile_query(q, "patient")
    assert compiled.matches(rec)
    ident = compiled.identifier(rec)
    assert set(ident.tags()) == {tag_of(k) for k in ("QueryRetrieveLevel", "PatientID", "StudyInstanceUID",
                                                     "Modality", "SeriesInstanceUID", "SeriesNumber",
                                                     "BodyPartExamined")}
    assert ident.QueryRetrieveLevel == "SERIES"
    assert ident.Modality == "CT" and ident.SeriesNumber == 4
    assert ident.BodyPartExamined == ""          # requested but not held: zero length
    # The unique keys above are added even when the (relational) request left them out.
    relational = compile_query(query(QueryRetrieveLevel="SERIES", Modality="CT"), "patient", relational=True)
    ident = relational.identifier(rec)
    assert ident.PatientID == "P1" and ident.StudyInstanceUID == "1.2"
    assert "SpecificCharacterSet" not in ident   # all ASCII


def test_identifier_names_the_character_set_when_a_value_needs_it():
    rec = record(PatientID="P1", PatientName="Müller^Anna", SpecificCharacterSet="ISO_IR 100")
    ident = compile_query(query(QueryRetrieveLevel="PATIENT", PatientName="m*"), "patient").identifier(rec)
    assert ident.SpecificCharacterSet == "ISO_IR 100"
    rec.pop(tag_of("SpecificCharacterSet"))
    ident = compile_query(query(QueryRetrieveLevel="PATIENT", PatientName=""), "patient").identifier(rec)
    assert ident.SpecificCharacterSet == "ISO_IR 192"
    assert bytes(ident.encode())  # encodable in the named character set


def test_a_key_sent_as_un_is_returned_with_the_records_vr_and_not_matched():
    q = Dataset()
    q.set(0x00100010, b"whatever", "UN")          # e.g. an implicit VR query with an unknown VR
    compiled = compile_query(q)
    rec = record(PatientName="Müller^Anna", SpecificCharacterSet="ISO_IR 100")
    assert compiled.matches(rec)                  # binary/UN keys are not matched
    ident = compiled.identifier(rec)
    assert ident[0x00100010].VR == "PN" and str(ident.PatientName) == "Müller^Anna"
    assert bytes(ident.encode())


def test_nested_identifier_names_the_character_set_once_at_the_top():
    inner = Dataset()
    inner.SpecificCharacterSet = "ISO_IR 100"
    inner.CodeMeaning = "Épaule"
    inner.CodeValue = "X1"
    rec = record(ProcedureCodeSequence=Sequence([inner]))
    ident = compile_query(query(ProcedureCodeSequence=[_item(CodeValue="X1", CodeMeaning="")])).identifier(rec)
    assert "SpecificCharacterSet" in ident
    assert "SpecificCharacterSet" not in ident.ProcedureCodeSequence[0]


# ------------------------------------------------ C.2.2.1.2 unknown Required Keys
@pytest.mark.parametrize(("model", "level", "keyword", "key"), [
    ("study", "STUDY", "AccessionNumber", "ACC-001"),
    ("study", "STUDY", "StudyID", "1*"),
    ("study", "STUDY", "PatientName", "Smith^John"),
    ("study", "STUDY", "StudyDate", "20200101-20201231"),
    ("study", "STUDY", "StudyTime", "0000-1200"),
    ("patient", "PATIENT", "PatientName", "Doe*"),
    ("study", "SERIES", "SeriesNumber", "7"),
    ("study", "SERIES", "Modality", "CT"),
    ("patient", "IMAGE", "InstanceNumber", "3"),
])
def test_an_unknown_required_key_matches_any_value(model, level, keyword, key):
    """"If a C-FIND SCP manages an entity with a Required Key of zero length, the
    value is considered unknown and all matching against the zero length Required
    Key shall be considered a successful match" (PS3.4 C.2.2.1.2)."""
    unique = {"PATIENT": {}, "STUDY": {"PatientID": "1"} if model == "patient" else {},
              "SERIES": {"StudyInstanceUID": "1.2"}, "IMAGE": {"PatientID": "1", "StudyInstanceUID": "1.2",
                                                               "SeriesInstanceUID": "1.2.3"}}[level]
    q = query(QueryRetrieveLevel=level, **unique, **{keyword: key})
    assert matches(q, record(**unique), model=model)                    # absent
    assert matches(q, record(**unique, **{keyword: ""}), model=model)   # zero length
    assert not matches(query(**{keyword: key}), record(**{keyword: ""}))   # no model: a plain key list


def test_an_unknown_optional_key_matches_no_value():
    q = query(QueryRetrieveLevel="STUDY", StudyDescription="CT*")
    assert not matches(q, record(StudyDescription=""), model="study")
    assert not matches(q, record(), model="study")


@pytest.mark.parametrize(("key", "empty_matches"), [("**", True), ("***", True), ("*?*", False), ("*A*", False)])
def test_a_wild_card_matching_the_empty_string_matches_zero_length_values(key, empty_matches):
    """"*" matches any sequence of characters, "including a zero length value" (C.2.2.2.4)."""
    q = query(QueryRetrieveLevel="STUDY", StudyDescription=key)
    assert matches(q, record(StudyDescription=""), model="study") == empty_matches
    assert matches(q, record(), model="study") == empty_matches
    assert matches(q, record(StudyDescription="A"), model="study")
