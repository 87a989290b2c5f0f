"""dicomnet.samples.archive: find, instances_for, files, duplicates, threads, speed."""
from __future__ import annotations

import logging
import threading
import time

import pytest

from dicomnet.dicom import read_file, write_file
from dicomnet.dicom.dataset import Dataset, tag_of
from dicomnet.errors import QueryError
from dicomnet.samples import Archive, generate


def query(**keys):
    ds = Dataset()
    for keyword, value in keys.items():
        ds.set(keyword, value)
    return ds


@pytest.fixture(scope="module")
def data():
    return list(generate(patients=3, studies=2, series=2, instances=3, rows=8, cols=8, seed=3))


@pytest.fixture()
def archive(data):
    a = Archive()
    for ds in data:
        assert a.add(ds)
    return a


def test_counts(archive):
    assert archive.counts() == {"PATIENT": 3, "STUDY": 6, "SERIES": 12, "IMAGE": 36}
    assert len(archive) == 36


def test_study_root_study_level_returns_each_study_once(archive, data):
    found = list(archive.find(query(QueryRetrieveLevel="STUDY", StudyInstanceUID="", PatientID="",
                                    ModalitiesInStudy="", NumberOfStudyRelatedSeries=None,
                                    NumberOfStudyRelatedInstances=None), "study"))
    assert sorted(ds.StudyInstanceUID for ds in found) == sorted({ds.StudyInstanceUID for ds in data})
    for ds in found:
        assert ds.ModalitiesInStudy == ["CT"]
        assert ds.NumberOfStudyRelatedSeries == 2 and ds.NumberOfStudyRelatedInstances == 6
        assert set(ds.tags()) == {tag_of(k) for k in ("QueryRetrieveLevel", "StudyInstanceUID", "PatientID",
                                                      "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
                                                      "NumberOfStudyRelatedInstances")}


def test_matching_agrees_with_a_brute_force_filter(archive, data):
    first = data[0]
    lo = min(ds.StudyDate for ds in data)
    hi = sorted({ds.StudyDate for ds in data})[2]
    found = list(archive.find(query(QueryRetrieveLevel="STUDY", StudyDate=f"{lo}-{hi}", StudyInstanceUID=""),
                              "study"))
    expected = {ds.StudyInstanceUID for ds in data if lo <= ds.StudyDate <= hi}
    assert {ds.StudyInstanceUID for ds in found} == expected and len(found) == len(expected)
    family = str(first.PatientName).split("^")[0]
    found = list(archive.find(query(QueryRetrieveLevel="PATIENT", PatientName=family[:2].lower() + "*",
                                    PatientID=""), "patient"))
    expected = {ds.PatientID for ds in data if str(ds.PatientName).lower().startswith(family[:2].lower())}
    assert {ds.PatientID for ds in found} == expected


def test_patient_root_levels_walk_down_the_tree(archive, data):
    first = data[0]
    studies = list(archive.find(query(QueryRetrieveLevel="STUDY", PatientID=first.PatientID,
                                      StudyInstanceUID=""), "patient"))
    assert len(studies) == 2 and all(ds.PatientID == first.PatientID for ds in studies)
    images = list(archive.find(query(QueryRetrieveLevel="IMAGE", PatientID=first.PatientID,
                                     StudyInstanceUID=first.StudyInstanceUID,
                                     SeriesInstanceUID=first.SeriesInstanceUID, SOPInstanceUID="",
                                     InstanceNumber=None), "patient"))
    assert [ds.InstanceNumber for ds in images] == [1, 2, 3]
    # Identifiers carry the unique keys of the levels above.
    assert all(ds.PatientID == first.PatientID and ds.StudyInstanceUID == first.StudyInstanceUID
               and ds.SeriesInstanceUID == first.SeriesInstanceUID for ds in images)
    # A wrong patient for the study finds nothing.
    assert list(archive.find(query(QueryRetrieveLevel="SERIES", PatientID="nobody",
                                   StudyInstanceUID=first.StudyInstanceUID), "patient")) == []


def test_patient_level_counts_and_charset(archive, data):
    found = list(archive.find(query(QueryRetrieveLevel="PATIENT", PatientID="", PatientName="",
                                    NumberOfPatientRelatedStudies=None, NumberOfPatientRelatedInstances=None),
                              "patient"))
    assert len(found) == 3
    for ds in found:
        assert ds.NumberOfPatientRelatedStudies == 2 and ds.NumberOfPatientRelatedInstances == 12
        name = str(ds.PatientName)
        if not name.isascii():
            assert ds.SpecificCharacterSet in ("ISO_IR 100", "ISO_IR 192")
            assert bytes(ds.encode())


def test_query_errors_come_before_any_identifier(archive):
    with pytest.raises(QueryError) as info:
        archive.find(query(QueryRetrieveLevel="PATIENT"), "study")
    assert info.value.status == 0xA900
    with pytest.raises(QueryError) as info:
        archive.find(query(QueryRetrieveLevel="IMAGE", StudyInstanceUID="1.2"), "study")
    assert info.value.status == 0xC000


def test_instances_for_needs_unique_keys_and_returns_everything_below(archive, data):
    first = data[0]
    series = archive.instances_for(query(QueryRetrieveLevel="SERIES", StudyInstanceUID=first.StudyInstanceUID,
                                         SeriesInstanceUID=first.SeriesInstanceUID), "study")
    assert [ds.SOPInstanceUID for ds in series] == [ds.SOPInstanceUID for ds in data
                                                     if ds.SeriesInstanceUID == first.SeriesInstanceUID]
    two_studies = sorted({ds.StudyInstanceUID for ds in data})[:2]
    got = archive.instances_for(query(QueryRetrieveLevel="STUDY", StudyInstanceUID=two_studies), "study")
    assert len(got) == 12 and {ds.StudyInstanceUID for ds in got} == set(two_studies)
    patient = archive.instances_for(query(QueryRetrieveLevel="PATIENT", PatientID=first.PatientID), "patient")
    assert len(patient) == 12
    # Other keys are not used for retrieval (only unique keys, C.4.2.2.1).
    got = archive.instances_for(query(QueryRetrieveLevel="STUDY", StudyInstanceUID=two_studies[0],
                                      StudyDescription="no such thing"), "study")
    assert len(got) == 6
    with pytest.raises(QueryError):    # the level's own unique key is required
        archive.instances_for(query(QueryRetrieveLevel="SERIES", StudyInstanceUID=first.StudyInstanceUID),
                              "study")
    with pytest.raises(QueryError):    # and those above it
        archive.instances_for(query(QueryRetrieveLevel="IMAGE", SOPInstanceUID=first.SOPInstanceUID), "study")
    got = archive.instances_for(query(QueryRetrieveLevel="IMAGE", SOPInstanceUID=first.SOPInstanceUID),
                                "study", relational=True)
    assert [ds.SOPInstanceUID for ds in got] == [first.SOPInstanceUID]


def test_duplicate_sop_instance_keeps_the_first(archive, data, caplog):
    copy = read_file(_file_bytes(data[0]))
    copy.StudyDescription = "CHANGED"
    with caplog.at_level(logging.WARNING, logger="dicomnet"):
        assert archive.add(copy) is False
    assert "duplicate SOP Instance UID" in caplog.text
    assert archive.duplicates == 1 and len(archive) == 36
    assert archive.get(data[0].SOPInstanceUID) is data[0]


def _file_bytes(ds):
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "x.dcm")
        write_file(path, ds)
        with open(path, "rb") as f:
            return f.read()


def test_add_path_reads_folders_recursively_and_skips_non_dicom(tmp_path, data, caplog):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    for n, ds in enumerate(data[:4]):
        folder = tmp_path / ("sub/deeper" if n % 2 else "sub")
        write_file(folder / f"{n}.dcm", ds)
    (tmp_path / "notes.txt").write_text("not DICOM at all, just some words\n" * 5)
    (tmp_path / "empty.dcm").write_bytes(b"")
    archive = Archive()
    with caplog.at_level(logging.WARNING, logger="dicomnet"):
        assert archive.add_path(tmp_path) == 4
    assert "notes.txt" in caplog.text and "empty.dcm" in caplog.text
    paths = archive.instances_for(query(QueryRetrieveLevel="STUDY", StudyInstanceUID=data[0].StudyInstanceUID),
                                  "study")
    assert all(isinstance(p, str) and p.endswith(".dcm") for p in paths) and len(paths) == 4
    assert read_file(paths[0]).SOPInstanceUID == data[0].SOPInstanceUID
    assert archive.add_path(tmp_path / "sub" / "0.dcm") == 0          # already there


def test_add_without_uids_is_refused():
    from dicomnet.errors import DicomParseError

    with pytest.raises(DicomParseError):
        Archive().add(query(PatientID="x", StudyInstanceUID="1.2"))


def test_threads_adding_and_querying_at_once():
    items = list(generate(patients=4, studies=2, series=2, instances=10, rows=4, cols=4, seed=9))
    archive = Archive()
    errors = []
    stop = threading.Event()

    def writer(part):
        try:
            for ds in part:
                archive.add(ds)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader():
        try:
            while not stop.is_set():
                for ds in archive.find(query(QueryRetrieveLevel="STUDY", StudyInstanceUID="",
                                             NumberOfStudyRelatedInstances=None), "study"):
                    assert ds.NumberOfStudyRelatedInstances >= 1
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    writers = [threading.Thread(target=writer, args=(items[i::4],)) for i in range(4)]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert errors == []
    assert archive.counts() == {"PATIENT": 4, "STUDY": 8, "SERIES": 16, "IMAGE": 160}
    totals = [ds.NumberOfStudyRelatedInstances for ds in archive.find(
        query(QueryRetrieveLevel="STUDY", StudyInstanceUID="", NumberOfStudyRelatedInstances=None), "study")]
    assert totals == [20] * 8


def test_find_streams_5000_identifiers_fast():
    archive = Archive.from_synthetic(patients=1, studies=1, series=1, instances=5000, rows=2, cols=2)
    study, = archive.find(query(QueryRetrieveLevel="STUDY", StudyInstanceUID=""), "study")
    series, = archive.find(query(QueryRetrieveLevel="SERIES", StudyInstanceUID=study.StudyInstanceUID,
                                 SeriesInstanceUID=""), "study")
    q = query(QueryRetrieveLevel="IMAGE", StudyInstanceUID=study.StudyInstanceUID,
              SeriesInstanceUID=series.SeriesInstanceUID, SOPInstanceUID="", InstanceNumber=None,
              SOPClassUID="", PatientName="", Modality="C*")
    start = time.perf_counter()
    count = sum(1 for _ in archive.find(q, "study"))
    rate = count / (time.perf_counter() - start)
    assert count == 5000
    assert rate > 20_000, f"{rate:.0f} identifiers/s"


def test_an_instance_with_values_outside_the_standard_ranges_is_found_and_answered():
    # A file may hold an IS past PS3.5's 32-bit range (read as it is); the C-FIND
    # response built from it must still encode (it raised ValueError, failing
    # the whole C-FIND for every match after it).
    import struct

    from dicomnet.dicom.reader import read_dataset
    from dicomnet.dicom.writer import encode_dataset

    explicit = "1.2.840.10008.1.2.1"
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.PatientID = "1.2.3", "1.2.3.4", "P1"
    big = b"2671067103"
    raw = bytes(encode_dataset(ds, explicit)) + struct.pack("<HH2sH", 0x0020, 0x0013, b"IS", len(big)) + big
    archive = Archive()
    archive.add(read_dataset(raw, transfer_syntax=explicit))
    found = list(archive.find(query(QueryRetrieveLevel="IMAGE", StudyInstanceUID="1.2.3", SeriesInstanceUID="1.2.3.4",
                                    SOPInstanceUID="", InstanceNumber=""), "study"))
    assert len(found) == 1
    back = read_dataset(bytes(encode_dataset(found[0], explicit)), transfer_syntax=explicit)
    assert back.InstanceNumber == 2671067103 and back.SOPInstanceUID == "1.2.3.4.5"
