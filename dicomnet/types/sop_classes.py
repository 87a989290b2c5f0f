"""The SOP class registry: every SOP class of PS3.6 Annex A with its service (PS3.4).

The service of each class is derived from its keyword (the PS3.6 keywords name
the service consistently: ``...Storage``, ``...InformationModelFind``, ...);
:data:`SERVICES` lists them. ``docs/SOP_CLASS_SUPPORT.md`` is generated from
this module by ``tools/gen_sop_docs.py``.

:data:`DEFAULT_ABSTRACT_SYNTAXES` are the 38 abstract syntaxes a client or
server proposes/accepts when the application does not choose: Verification,
Patient and Study Root Q/R FIND/MOVE/GET, Modality Worklist FIND and the 30
most used storage classes (listed below in order). The set is held at 38 on
purpose; Raw Data and the multi-frame Secondary Capture storage classes are the
next candidates and are left for the application to add.
"""

from __future__ import annotations

from dataclasses import dataclass

from dicomnet.types import uids as _uids
from dicomnet.types._uids import REGISTRY
from dicomnet.types.uids import META_SOP_CLASS, SOP_CLASS, UID

__all__ = [
    "SOPClass",
    "SERVICES",
    "sop_class",
    "all_sop_classes",
    "storage_sop_classes",
    "is_storage_sop_class",
    "is_query_retrieve_sop_class",
    "is_registered_sop_class",
    "DEFAULT_ABSTRACT_SYNTAXES",
    "DEFAULT_TRANSFER_SYNTAXES",
]


@dataclass(frozen=True, slots=True)
class SOPClass:
    """A registered SOP class.

    ``operation`` is ``"find"``, ``"move"`` or ``"get"`` for the C-FIND, C-MOVE
    and C-GET information models, else None.
    """

    uid: UID
    keyword: str
    name: str
    service: str
    retired: bool
    meta: bool
    operation: str | None = None

    @property
    def is_storage(self) -> bool:
        """True for a Storage Service Class SOP class (C-STORE)."""
        return self.service == "storage"


STORAGE = "storage"
QUERY_RETRIEVE = "query/retrieve"

# Query/retrieve-style information models (PS3.4 C, U, V, X, Y, HH, II, KK):
# keyword prefix -> service.
_QR_MODELS: tuple[tuple[str, str], ...] = (
    ("PatientRootQueryRetrieve", QUERY_RETRIEVE),
    ("StudyRootQueryRetrieve", QUERY_RETRIEVE),
    ("PatientStudyOnlyQueryRetrieve", QUERY_RETRIEVE),
    ("CompositeInstanceRoot", QUERY_RETRIEVE),
    ("CompositeInstanceRetrieveWithoutBulkData", QUERY_RETRIEVE),
    ("HangingProtocolInformationModel", "hanging protocol query/retrieve"),
    ("ColorPaletteQueryRetrieve", "color palette query/retrieve"),
    ("GenericImplantTemplateInformationModel", "implant template query/retrieve"),
    ("ImplantAssemblyTemplateInformationModel", "implant template query/retrieve"),
    ("ImplantTemplateGroupInformationModel", "implant template query/retrieve"),
    ("DefinedProcedureProtocolInformationModel", "defined procedure protocol query/retrieve"),
    ("ProtocolApprovalInformationModel", "protocol approval query/retrieve"),
    ("Inventory", "inventory query/retrieve"),
)

# Other services, by keyword prefix (first match wins).
_OTHER: tuple[tuple[str, str], ...] = (
    ("Verification", "verification"),
    ("StorageCommitment", "storage commitment"),
    ("MediaStorageDirectory", "media storage directory"),
    ("ModalityWorklist", "modality worklist"),
    ("GeneralPurposeWorklist", "general purpose worklist"),
    ("GeneralPurpose", "general purpose worklist"),
    ("ModalityPerformedProcedureStep", "modality performed procedure step"),
    ("UnifiedProcedureStep", "unified procedure step"),
    ("UnifiedWorklistAndProcedureStep", "unified procedure step"),
    ("InstanceAvailabilityNotification", "instance availability notification"),
    ("BasicStudyContentNotification", "study content notification"),
    ("ProceduralEventLogging", "application event logging"),
    ("SubstanceAdministrationLogging", "application event logging"),
    ("Detached", "detached management"),
    ("StudyComponentManagement", "detached management"),
    ("MediaCreationManagement", "media creation management"),
    ("DisplaySystem", "display system"),
    ("RTConventionalMachineVerification", "rt machine verification"),
    ("RTIonMachineVerification", "rt machine verification"),
    ("GeneralRelevantPatientInformationQuery", "relevant patient information query"),
    ("BreastImagingRelevantPatientInformationQuery", "relevant patient information query"),
    ("CardiacRelevantPatientInformationQuery", "relevant patient information query"),
    ("ProductCharacteristicsQuery", "non-patient object query"),
    ("SubstanceApprovalQuery", "non-patient object query"),
    ("RepositoryQuery", "repository query"),
    ("InventoryCreation", "inventory creation"),
    ("StorageManagement", "storage management"),
)

# Print Management (PS3.4 H), by keyword.
_PRINT = frozenset(
    "BasicFilmSession BasicFilmBox BasicGrayscaleImageBox BasicColorImageBox "
    "ReferencedImageBox BasicGrayscalePrintManagementMeta ReferencedGrayscalePrintManagementMeta "
    "PrintJob BasicAnnotationBox Printer PrinterConfigurationRetrieval "
    "BasicColorPrintManagementMeta ReferencedColorPrintManagementMeta VOILUTBox PresentationLUT "
    "ImageOverlayBox BasicPrintImageOverlayBox PrintQueueManagement PullPrintRequest "
    "PullStoredPrintManagementMeta".split()
)

# Query SOP classes that use C-FIND alone (PS3.4 Q, R, V, CC and UPS Query).
_FIND_ONLY = frozenset(
    "GeneralRelevantPatientInformationQuery BreastImagingRelevantPatientInformationQuery "
    "CardiacRelevantPatientInformationQuery ProductCharacteristicsQuery SubstanceApprovalQuery "
    "UnifiedProcedureStepQuery RepositoryQuery".split()
)

_OPERATIONS = {"Find": "find", "Move": "move", "Get": "get"}


def _classify(keyword: str) -> tuple[str, str | None]:
    """Return (service, operation) for a SOP class keyword."""
    if not keyword:
        return "unknown", None
    for prefix, service in _OTHER[:3]:  # before the "...Storage" rule
        if keyword.startswith(prefix):
            return service, None
    if "Storage" in keyword:
        # ...Storage, ...StorageForPresentation, ...StorageRetired, ...StorageTrial
        return STORAGE, None
    if keyword.endswith("RealTimeCommunication"):
        return "real-time video", None
    if keyword in _PRINT:
        return "print management", None
    for suffix, operation in _OPERATIONS.items():
        if keyword.endswith(suffix):
            for prefix, service in _QR_MODELS:
                if keyword.startswith(prefix):
                    return service, operation
            if keyword.startswith(("ModalityWorklist", "GeneralPurposeWorklist")):
                return _classify_other(keyword), operation
    return _classify_other(keyword), ("find" if keyword in _FIND_ONLY else None)


def _classify_other(keyword: str) -> str:
    for prefix, service in _OTHER:
        if keyword.startswith(prefix):
            return service
    return "other"


def _build() -> dict[str, SOPClass]:
    table: dict[str, SOPClass] = {}
    for uid, keyword, uid_type, retired, name in REGISTRY:
        if uid_type not in (SOP_CLASS, META_SOP_CLASS):
            continue
        service, operation = _classify(keyword)
        table[uid] = SOPClass(
            uid=UID(uid),
            keyword=keyword,
            name=name or uid,
            service=service,
            retired=retired,
            meta=uid_type == META_SOP_CLASS,
            operation=operation,
        )
    return table


_TABLE = _build()
SERVICES: tuple[str, ...] = tuple(sorted({c.service for c in _TABLE.values()}))
_STORAGE = frozenset(uid for uid, c in _TABLE.items() if c.service == STORAGE)
_QR = frozenset(uid for uid, c in _TABLE.items() if c.service.endswith(QUERY_RETRIEVE))


def sop_class(uid: str) -> SOPClass:
    """Return the registered :class:`SOPClass` for ``uid``; KeyError if unregistered."""
    try:
        return _TABLE[uid]
    except KeyError:
        raise KeyError(f"{uid!r} is not a registered SOP class UID") from None


def all_sop_classes() -> tuple[SOPClass, ...]:
    """Every registered SOP class (and Meta SOP class), in registry order."""
    return tuple(_TABLE.values())


def storage_sop_classes(include_retired: bool = False) -> tuple[UID, ...]:
    """The Storage Service Class SOP class UIDs, in registry order."""
    return tuple(
        c.uid for c in _TABLE.values() if c.service == STORAGE and (include_retired or not c.retired)
    )


def is_storage_sop_class(uid: str) -> bool:
    """True if ``uid`` is a registered Storage SOP class (retired ones included)."""
    return uid in _STORAGE


def is_query_retrieve_sop_class(uid: str) -> bool:
    """True for a registered query/retrieve information model (FIND, MOVE or GET).

    This covers the Patient/Study Root (and retired Patient/Study Only),
    Composite Instance retrieve models and the other Q/R services of PS3.4
    (hanging protocol, color palette, implant templates, defined procedure
    protocols, protocol approval, inventory). Worklists are not Q/R models.
    """
    return uid in _QR


def is_registered_sop_class(uid: str) -> bool:
    """True if ``uid`` is a SOP class (or Meta SOP class) of the PS3.6 registry."""
    return uid in _TABLE


_DEFAULT_KEYWORDS: tuple[str, ...] = (
    # Verification, query/retrieve and worklist (8)
    "Verification",
    "PatientRootQueryRetrieveInformationModelFind",
    "PatientRootQueryRetrieveInformationModelMove",
    "PatientRootQueryRetrieveInformationModelGet",
    "StudyRootQueryRetrieveInformationModelFind",
    "StudyRootQueryRetrieveInformationModelMove",
    "StudyRootQueryRetrieveInformationModelGet",
    "ModalityWorklistInformationModelFind",
    # Storage (30)
    "CTImageStorage",
    "EnhancedCTImageStorage",
    "MRImageStorage",
    "EnhancedMRImageStorage",
    "ComputedRadiographyImageStorage",
    "DigitalXRayImageStorageForPresentation",
    "DigitalXRayImageStorageForProcessing",
    "DigitalMammographyXRayImageStorageForPresentation",
    "UltrasoundImageStorage",
    "UltrasoundMultiFrameImageStorage",
    "SecondaryCaptureImageStorage",
    "NuclearMedicineImageStorage",
    "PositronEmissionTomographyImageStorage",
    "EnhancedPETImageStorage",
    "RTImageStorage",
    "RTDoseStorage",
    "RTStructureSetStorage",
    "RTPlanStorage",
    "XRayAngiographicImageStorage",
    "EnhancedXAImageStorage",
    "XRayRadiofluoroscopicImageStorage",
    "VLPhotographicImageStorage",
    "VLEndoscopicImageStorage",
    "EncapsulatedPDFStorage",
    "BasicTextSRStorage",
    "EnhancedSRStorage",
    "ComprehensiveSRStorage",
    "KeyObjectSelectionDocumentStorage",
    "GrayscaleSoftcopyPresentationStateStorage",
    "SegmentationStorage",
)

DEFAULT_ABSTRACT_SYNTAXES: tuple[UID, ...] = tuple(_uids.by_keyword(k) for k in _DEFAULT_KEYWORDS)
"""The 38 abstract syntaxes negotiated by default (see the module docstring)."""

DEFAULT_TRANSFER_SYNTAXES: tuple[UID, ...] = (
    _uids.by_keyword("ExplicitVRLittleEndian"),
    _uids.by_keyword("ImplicitVRLittleEndian"),
)
"""Transfer syntaxes proposed by default, preferred first (Implicit VR LE is
the one every DICOM application must support, PS3.5 10.1)."""

_DEFAULTS = frozenset(DEFAULT_ABSTRACT_SYNTAXES)


def is_default_abstract_syntax(uid: str) -> bool:
    """True if ``uid`` is one of :data:`DEFAULT_ABSTRACT_SYNTAXES`."""
    return uid in _DEFAULTS


__all__ += ["is_default_abstract_syntax"]
