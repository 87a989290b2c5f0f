"""Tests for dicomnet.types.sop_classes."""

from __future__ import annotations

import pytest

from dicomnet.types import sop_classes as sc
from dicomnet.types import uids
from dicomnet.types._uids import REGISTRY


def test_exactly_38_unique_registered_defaults():
    defaults = sc.DEFAULT_ABSTRACT_SYNTAXES
    assert len(defaults) == 38
    assert len(set(defaults)) == 38
    for uid in defaults:
        c = sc.sop_class(uid)
        assert not c.retired and not c.meta
        assert sc.is_default_abstract_syntax(uid)
    assert defaults[0] == uids.Verification
    for kw in ("CTImageStorage", "MRImageStorage", "StudyRootQueryRetrieveInformationModelMove",
               "ModalityWorklistInformationModelFind", "SegmentationStorage",
               "DigitalXRayImageStorageForProcessing"):
        assert uids.by_keyword(kw) in defaults
    storage = [u for u in defaults if sc.is_storage_sop_class(u)]
    qr = [u for u in defaults if sc.is_query_retrieve_sop_class(u)]
    assert (len(storage), len(qr)) == (30, 6)


def test_default_transfer_syntaxes():
    assert sc.DEFAULT_TRANSFER_SYNTAXES == (uids.ExplicitVRLittleEndian, uids.ImplicitVRLittleEndian)


def test_every_sop_class_registered():
    rows = [r for r in REGISTRY if r[2] in ("SOP Class", "Meta SOP Class")]
    assert len(sc.all_sop_classes()) == len(rows)
    for uid, keyword, uid_type, retired, _name in rows:
        c = sc.sop_class(uid)
        assert c.keyword == keyword and c.retired is retired
        assert c.meta is (uid_type == "Meta SOP Class")
        assert c.service in sc.SERVICES
    assert "other" not in sc.SERVICES


def test_storage_classes():
    current = sc.storage_sop_classes()
    assert len(current) >= 150
    assert len(sc.storage_sop_classes(include_retired=True)) > len(current)
    assert sc.is_storage_sop_class(uids.CTImageStorage)
    assert sc.is_storage_sop_class(uids.DigitalMammographyXRayImageStorageForPresentation)
    assert sc.is_storage_sop_class(uids.NuclearMedicineImageStorageRetired)  # retired, still storage
    assert sc.is_storage_sop_class(uids.RTBeamsDeliveryInstructionStorage)
    assert not sc.is_storage_sop_class(uids.StorageCommitmentPushModel)
    assert not sc.is_storage_sop_class(uids.MediaStorageDirectoryStorage)
    assert not sc.is_storage_sop_class(uids.Verification)
    assert not sc.is_storage_sop_class("1.2.3.4")
    assert sc.sop_class(uids.CTImageStorage).is_storage


def test_services():
    assert sc.sop_class(uids.Verification).service == "verification"
    assert sc.sop_class(uids.StorageCommitmentPushModel).service == "storage commitment"
    mwl = sc.sop_class(uids.ModalityWorklistInformationModelFind)
    assert (mwl.service, mwl.operation) == ("modality worklist", "find")
    assert not sc.is_query_retrieve_sop_class(mwl.uid)
    for kw, op in (("PatientRootQueryRetrieveInformationModelFind", "find"),
                   ("StudyRootQueryRetrieveInformationModelMove", "move"),
                   ("CompositeInstanceRetrieveWithoutBulkDataGet", "get"),
                   ("HangingProtocolInformationModelGet", "get")):
        c = sc.sop_class(uids.by_keyword(kw))
        assert c.operation == op and sc.is_query_retrieve_sop_class(c.uid)
    assert sc.sop_class(uids.BasicFilmSession).service == "print management"
    assert sc.sop_class(uids.ModalityPerformedProcedureStep).service == (
        "modality performed procedure step")
    assert sc.sop_class(uids.UnifiedProcedureStepPush).service == "unified procedure step"
    assert sc.sop_class(uids.BasicGrayscalePrintManagementMeta).meta


def test_unknown():
    with pytest.raises(KeyError):
        sc.sop_class("1.2.3.4")
    assert not sc.is_registered_sop_class("1.2.3.4")
    assert not sc.is_query_retrieve_sop_class("1.2.3.4")
