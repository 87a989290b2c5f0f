"""An Archive behind dicomnet.Server's on_find, queried by dicomnet.Client over loopback."""
from __future__ import annotations

import pytest

from dicomnet import Client, DimseStatusError, Server
from dicomnet.samples import Archive


class ArchiveHandler:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    def on_find(self, ctx, query):
        # The presentation context's SOP class names the information model.
        return self.archive.find(query, ctx.abstract_syntax)


@pytest.fixture(scope="module")
def server():
    archive = Archive.from_synthetic(patients=3, studies=2, series=2, instances=2, rows=4, cols=4, seed=11)
    with Server("ANY-SCP", ArchiveHandler(archive)).start("127.0.0.1", 0) as srv:
        yield srv, archive


def test_c_find_study_and_patient_root_over_the_network(server):
    srv, archive = server
    with Client("TESTER").associate("127.0.0.1", srv.port, "ANY-SCP") as assoc:
        studies = list(assoc.find({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "", "PatientName": "",
                                   "PatientID": "", "NumberOfStudyRelatedInstances": None}, model="study"))
        assert len(studies) == 6
        assert all(ds.NumberOfStudyRelatedInstances == 4 for ds in studies)
        # Non-ASCII names arrive intact: the identifier names its character set.
        local = {str(ds.PatientName) for ds in archive.find(_q("STUDY", StudyInstanceUID="", PatientName=""))}
        assert {str(ds.PatientName) for ds in studies} == local
        pid = studies[0].PatientID
        series = list(assoc.find({"QueryRetrieveLevel": "SERIES", "PatientID": pid,
                                  "StudyInstanceUID": studies[0].StudyInstanceUID, "SeriesInstanceUID": "",
                                  "Modality": ""}, model="patient"))
        assert len(series) == 2 and {ds.Modality for ds in series} == {"CT"}
        assert all(ds.PatientID == pid and ds.QueryRetrieveLevel == "SERIES" for ds in series)


def test_a_bad_identifier_is_a_failure_status(server):
    srv, _ = server
    with Client("TESTER").associate("127.0.0.1", srv.port, "ANY-SCP") as assoc:
        with pytest.raises(DimseStatusError) as info:
            list(assoc.find({"QueryRetrieveLevel": "PATIENT", "PatientID": ""}, model="study"))
        # The SCP maps every handler exception to 0xC000 today; QueryError.status
        # (0xA900 here) is not yet used by dicomnet.dimse.scp.
        assert info.value.status in (0xA900, 0xC000)
        assert "QueryError" in (info.value.comment or "")


def _q(level, **keys):
    from dicomnet.dicom.dataset import Dataset

    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for k, v in keys.items():
        ds.set(k, v)
    return ds
