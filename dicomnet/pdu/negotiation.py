"""Association negotiation (PS3.8 7.1, 9.3.2-9.3.4; PS3.7 Annex D), as pure functions.

Requestor side: :func:`build_associate_rq` proposes presentation contexts and
user information. Acceptor side: :func:`negotiate` answers an A-ASSOCIATE-RQ
under an :class:`AcceptorPolicy` with an A-ASSOCIATE-AC or -RJ. Both sides then
call :func:`negotiated_from` to get the :class:`NegotiatedAssociation` -- the
accepted contexts with their transfer syntax and roles, and each end's limits.

Roles (PS3.7 D.3.3.4): an SCP/SCU Role Selection item in the RQ says which
roles the *requestor* offers to play for a SOP class; the AC answers 1 to
accept an offered role, 0 to turn it down, never 1 for a role not offered.
Without the item (in the RQ, or in the AC) the requestor is SCU and the
acceptor SCP. The acceptor's roles are the mirror image of the requestor's.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

from ..errors import PDUError
from .items import (
    ABSTRACT_SYNTAX_NOT_SUPPORTED,
    ACCEPTANCE,
    TRANSFER_SYNTAXES_NOT_SUPPORTED,
    USER_REJECTION,
    AsyncOperationsWindow,
    PresentationContextAC,
    PresentationContextRQ,
    RoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityAC,
    UserIdentityRQ,
    UserInformation,
)
from .pdus import DICOM_APPLICATION_CONTEXT, AAssociateAC, AAssociateRJ, AAssociateRQ, validate_ae_title

__all__ = [
    "DEFAULT_MAX_PDU",
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "UNCOMPRESSED_TRANSFER_SYNTAXES",
    "AcceptorPolicy",
    "NegotiatedContext",
    "NegotiatedAssociation",
    "build_associate_rq",
    "check_max_pdu",
    "provider_check",
    "negotiate",
    "negotiated_from",
    "default_supported",
]

logger = logging.getLogger("dicomnet")

#: Largest P-DATA-TF variable field we offer to receive, unless told otherwise.
#: 1 MiB: a typical image then arrives in one or a few PDUs, i.e. few Python
#: steps per instance (our receive buffer grows only with bytes actually
#: received). A peer that cannot send PDUs this large sends smaller ones (the
#: Maximum Length is a limit, not a request); what *we* send is always cut to
#: the peer's own maximum (dcmtk tools accept at most 128 KiB, pynetdicom and
#: Orthanc default to about 16 KiB).
DEFAULT_MAX_PDU = 1 << 20
#: dicomnet's Implementation Class UID (PS3.7 D.3.3.2), a UUID-derived UID (PS3.5 B.2).
IMPLEMENTATION_CLASS_UID = "2.25.139869872471706760963384181199194595705"
IMPLEMENTATION_VERSION_NAME = "DICOMNET_010"

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
#: The uncompressed transfer syntaxes an acceptor takes by default, in preference order.
UNCOMPRESSED_TRANSFER_SYNTAXES: tuple[str, ...] = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)

_VERIFICATION = "1.2.840.10008.1.1"
_MAX_CONTEXTS = 128  # odd context ids 1..255 (PS3.8 9.3.2.2)

_RJ = AAssociateRJ


def check_max_pdu(value: int, name: str = "max_pdu") -> int:
    """``value`` as a Maximum Length to offer (PS3.8 D.1): 0 (no limit) or
    7..0xFFFFFFFF -- a P-DATA-TF's 6 header bytes and at least one byte of
    data. Anything else is a ValueError (TypeError if not an int) here,
    rather than a failed or rejected association later."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value != 0 and not 7 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{name} must be 0 (no limit) or 7..4294967295, got {value}")
    return value


# ---------------------------------------------------------------- requestor
def _default_contexts() -> list[tuple[str, list[str]]]:
    from ..types.sop_classes import DEFAULT_ABSTRACT_SYNTAXES  # lands with dicomnet.types

    return [(str(uid), list(UNCOMPRESSED_TRANSFER_SYNTAXES)) for uid in DEFAULT_ABSTRACT_SYNTAXES]


def build_associate_rq(
    calling_ae: str,
    called_ae: str,
    contexts: Sequence[tuple[str, Sequence[str]]] | None = None,
    *,
    max_pdu: int = DEFAULT_MAX_PDU,
    implementation_class_uid: str = IMPLEMENTATION_CLASS_UID,
    implementation_version_name: str | None = IMPLEMENTATION_VERSION_NAME,
    role_selections: Iterable[RoleSelection | tuple[str, bool, bool]] = (),
    extended_negotiations: Iterable[SOPClassExtendedNegotiation] = (),
    common_extended_negotiations: Iterable[SOPClassCommonExtendedNegotiation] = (),
    user_identity: UserIdentityRQ | None = None,
    async_ops: AsyncOperationsWindow | None = None,
) -> AAssociateRQ:
    """Build an A-ASSOCIATE-RQ proposing ``contexts`` (abstract syntax, transfer syntaxes).

    Context ids are the odd numbers 1, 3, 5, ... in the order given; at most
    128 contexts fit. ``None`` proposes the default abstract syntaxes of
    :mod:`dicomnet.types.sop_classes`, each with Explicit and Implicit VR Little
    Endian. ``max_pdu`` is the largest P-DATA-TF we will receive (0: no limit).
    Role selections may be given as ``(sop_class_uid, scu_role, scp_role)``.
    ``async_ops`` proposes an Asynchronous Operations Window (PS3.7 D.3.3.3);
    None (the default) sends no such item, since some peers mishandle it.
    """
    proposed = _default_contexts() if contexts is None else list(contexts)
    if not proposed:
        raise PDUError("an A-ASSOCIATE-RQ needs at least one presentation context")
    if len(proposed) > _MAX_CONTEXTS:
        raise PDUError(f"{len(proposed)} presentation contexts proposed, at most {_MAX_CONTEXTS} fit")
    pcs = []
    for index, (abstract, syntaxes) in enumerate(proposed):
        if isinstance(syntaxes, str):
            raise TypeError(f"transfer syntaxes for {abstract} must be a sequence of UIDs, not a str")
        pcs.append(PresentationContextRQ(2 * index + 1, str(abstract), tuple(str(ts) for ts in syntaxes)))
    roles = tuple(r if isinstance(r, RoleSelection) else RoleSelection(str(r[0]), bool(r[1]), bool(r[2]))
                  for r in role_selections)
    user_info = UserInformation(
        max_length=max_pdu,
        implementation_class_uid=implementation_class_uid,
        implementation_version_name=implementation_version_name,
        role_selections=roles,
        extended_negotiations=tuple(extended_negotiations),
        common_extended_negotiations=tuple(common_extended_negotiations),
        user_identity=user_identity,
        async_ops=async_ops,
    )
    return AAssociateRQ(
        called_ae=called_ae,
        calling_ae=calling_ae,
        presentation_contexts=tuple(pcs),
        user_information=user_info,
    )


# ----------------------------------------------------------------- acceptor
@lru_cache(maxsize=1)
def default_supported() -> Mapping[str, tuple[str, ...]]:
    """Every registered Storage and Query/Retrieve SOP class, the default abstract
    syntaxes (Verification, worklist, ...), each with
    :data:`UNCOMPRESSED_TRANSFER_SYNTAXES` -- the acceptor's default."""
    from ..types import sop_classes as sc  # local: the registry is large

    classes = {str(c.uid) for c in sc.all_sop_classes()
               if sc.is_storage_sop_class(c.uid) or sc.is_query_retrieve_sop_class(c.uid)}
    classes.update(str(u) for u in sc.DEFAULT_ABSTRACT_SYNTAXES)
    classes.add(_VERIFICATION)
    return {uid: UNCOMPRESSED_TRANSFER_SYNTAXES for uid in sorted(classes)}


IdentityVerdict = bool | bytes


@dataclass
class AcceptorPolicy:
    """How an acceptor answers A-ASSOCIATE-RQs.

    - ``ae_title``: ours; with ``require_called_ae`` the RQ's called AE title
      must equal it (after stripping spaces), else RJ reason 7.
    - ``allowed_calling_aes``: None accepts any calling AE, else RJ reason 3.
    - ``supported``: abstract syntax -> transfer syntaxes in our preference
      order; None is :func:`default_supported`.
    - ``prefer_requestor_order``: pick the first proposed syntax we support
      (True), or the first of ours that was proposed (False). On a context
      where only we send (the requestor took the SCP role: C-GET
      sub-operations) ours decides either way: the sender's order.
    - ``max_pdu``: the largest P-DATA-TF we receive (0: no limit).
    - roles: ``accept_scu_role`` accepts a requestor's SCU proposal;
      ``accept_scp_role`` lists SOP classes (or a predicate) for which we
      accept the requestor as SCP and so act as SCU ourselves -- e.g. the
      storage classes when we are a C-GET SCP, which sends C-STORE sub-operations.
    - ``authenticate``: called with the RQ's :class:`UserIdentityRQ`; False
      rejects the association, True or the server response (bytes) accepts it.
      ``require_user_identity`` rejects an RQ that carries none. Both
      rejections are an authorization failure (PS3.7 D.3.3.7): rejected-
      permanent, source service-provider (ACSE), no-reason-given. A server
      response goes out only when the RQ asked for one, and for a username
      (identity types 1 and 2) it is empty whatever ``authenticate`` returned
      (PS3.7 Table D.3-15).
    - ``extended_negotiation``: called with each SOP Class Extended Negotiation
      item of an accepted class; the bytes it returns are answered, None omits.
    - ``max_contexts``: more proposed contexts than this (at most 128) is RJ.
    - ``max_async_invoked``: when the requestor offers to perform several
      sub-operations asynchronously (an Asynchronous Operations Window, PS3.7
      D.3.3.3 -- a C-GET SCU that takes C-STOREs without waiting between
      them), invoke up to this many at once (at most what it offers); the AC
      then answers the window with (that number, what we perform). 1
      declines.
    - ``max_async_performed``: how many of the requestor's operations may be
      outstanding when it offers to invoke several (e.g. a C-STORE SCU that
      sends the next data sets without waiting for each response); they are
      queued and performed one at a time, in order. With both at 1 the AC
      has no window: everything synchronous.
    """

    ae_title: str
    require_called_ae: bool = True
    allowed_calling_aes: Collection[str] | None = None
    supported: Mapping[str, Sequence[str]] | None = None
    prefer_requestor_order: bool = True
    max_pdu: int = DEFAULT_MAX_PDU
    accept_scu_role: bool = True
    accept_scp_role: Collection[str] | Callable[[str], bool] = ()
    authenticate: Callable[[UserIdentityRQ], IdentityVerdict] | None = None
    require_user_identity: bool = False
    extended_negotiation: Callable[[SOPClassExtendedNegotiation], bytes | None] | None = None
    max_contexts: int = _MAX_CONTEXTS
    max_async_invoked: int = 8
    implementation_class_uid: str = IMPLEMENTATION_CLASS_UID
    implementation_version_name: str | None = IMPLEMENTATION_VERSION_NAME
    #: Outstanding requests we let a requestor have when it proposes an
    #: Asynchronous Operations Window (PS3.7 D.3.3.3); they are queued and
    #: performed one at a time, in order.
    max_async_performed: int = 16

    def scp_role_accepted(self, sop_class_uid: str) -> bool:
        """True if we let the requestor act as SCP for ``sop_class_uid``."""
        if callable(self.accept_scp_role):
            return bool(self.accept_scp_role(sop_class_uid))
        return sop_class_uid in self.accept_scp_role


def provider_check(rq: AAssociateRQ) -> AAssociateRJ | None:
    """What the Upper Layer service-provider itself refuses (PS3.8 AE-6).

    Protocol version 1 is bit 0 of the protocol-version field (PS3.8 9.3.2);
    without it: rejected-permanent, service-provider (ACSE), reason 2.
    """
    if not rq.protocol_version & 1:
        return _RJ(_RJ.RESULT_REJECTED_PERMANENT, _RJ.SOURCE_SERVICE_PROVIDER_ACSE,
                   _RJ.REASON_PROTOCOL_VERSION_NOT_SUPPORTED)
    return None


def _reject(reason: int, source: int = _RJ.SOURCE_SERVICE_USER) -> AAssociateRJ:
    return _RJ(_RJ.RESULT_REJECTED_PERMANENT, source, reason)


def _choose_syntax(offered: Sequence[str], ours: Sequence[str], requestor_first: bool) -> str | None:
    if requestor_first:
        return next((ts for ts in offered if ts in ours), None)
    return next((ts for ts in ours if ts in offered), None)


def _valid_ae(title: str) -> bool:
    try:
        validate_ae_title(title)
    except PDUError:
        return False
    return True


def negotiate(rq: AAssociateRQ, policy: AcceptorPolicy) -> AAssociateAC | AAssociateRJ:
    """Answer ``rq`` under ``policy`` (PS3.8 9.3.3, 9.3.4; PS3.7 D.3.3).

    Rejections, all rejected-permanent (PS3.8 Table 9-21): protocol version
    (provider/ACSE, 2); application context name (user, 2); called AE title
    (user, 7) and a called or calling title the AE VR forbids (user, 7 or 3);
    calling AE title not allowed (user, 3); malformed context ids or no context
    (provider/ACSE, 1); more contexts than ``max_contexts`` (provider/
    presentation, 2, local-limit-exceeded); user identity refused or missing
    when required (provider/ACSE, 1: PS3.7 D.3.3.7). Otherwise an
    A-ASSOCIATE-AC answering every context.
    """
    rj = provider_check(rq)
    if rj is not None:
        return rj
    if rq.application_context != DICOM_APPLICATION_CONTEXT:
        return _reject(_RJ.REASON_APPLICATION_CONTEXT_NOT_SUPPORTED)
    # A title the standard forbids (all spaces, a backslash, control
    # characters: PS3.5 AE VR) cannot be echoed in an A-ASSOCIATE-AC either.
    if not _valid_ae(rq.called_ae) or (policy.require_called_ae
                                       and rq.called_ae.strip() != policy.ae_title.strip()):
        return _reject(_RJ.REASON_CALLED_AE_NOT_RECOGNIZED)
    if not _valid_ae(rq.calling_ae):
        return _reject(_RJ.REASON_CALLING_AE_NOT_RECOGNIZED)
    if policy.allowed_calling_aes is not None and rq.calling_ae.strip() not in {
        a.strip() for a in policy.allowed_calling_aes
    }:
        return _reject(_RJ.REASON_CALLING_AE_NOT_RECOGNIZED)
    if len(rq.presentation_contexts) > min(policy.max_contexts, _MAX_CONTEXTS):
        return _reject(_RJ.REASON_LOCAL_LIMIT_EXCEEDED, _RJ.SOURCE_SERVICE_PROVIDER_PRESENTATION)
    problems = rq.context_id_problems()
    if problems:
        logger.warning("rejecting A-ASSOCIATE-RQ from %r: %s", rq.calling_ae, "; ".join(problems))
        return _reject(_RJ.REASON_NO_REASON_GIVEN, _RJ.SOURCE_SERVICE_PROVIDER_ACSE)

    # User identity (PS3.7 D.3.3.7).
    rq_info = rq.user_information
    identity = rq_info.user_identity if isinstance(rq_info.user_identity, UserIdentityRQ) else None
    identity_ac: UserIdentityAC | None = None
    # A refusal is an authorization failure: "Rejection Permanent with a
    # Source of DICOM UL service provider (ACSE related function)".
    if identity is None:
        if policy.require_user_identity:
            return _reject(_RJ.REASON_NO_REASON_GIVEN, _RJ.SOURCE_SERVICE_PROVIDER_ACSE)
    elif policy.authenticate is not None:
        verdict = policy.authenticate(identity)
        if verdict is False or verdict is None:
            return _reject(_RJ.REASON_NO_REASON_GIVEN, _RJ.SOURCE_SERVICE_PROVIDER_ACSE)
        if identity.positive_response_requested:
            # A username (types 1 and 2) gets a zero-length server response (Table D.3-15).
            response = verdict if isinstance(verdict, bytes) and identity.identity_type not in (1, 2) else b""
            identity_ac = UserIdentityAC(response)

    # Presentation contexts and roles.
    supported = policy.supported if policy.supported is not None else default_supported()
    proposed_roles = {r.sop_class_uid: r for r in rq_info.role_selections}
    answers: list[PresentationContextAC] = []
    answered_roles: dict[str, RoleSelection] = {}
    for pc in rq.presentation_contexts:
        ours = supported.get(pc.abstract_syntax)
        if ours is None:
            answers.append(PresentationContextAC(pc.context_id, ABSTRACT_SYNTAX_NOT_SUPPORTED, None))
            continue
        chosen = _choose_syntax(pc.transfer_syntaxes, ours, policy.prefer_requestor_order)
        if chosen is None:
            answers.append(PresentationContextAC(pc.context_id, TRANSFER_SYNTAXES_NOT_SUPPORTED, None))
            continue
        proposal = proposed_roles.get(pc.abstract_syntax)
        if proposal is not None:
            # Return 1 only for a role that was proposed (PS3.7 D.3.3.4).
            answer = RoleSelection(
                pc.abstract_syntax,
                proposal.scu_role and policy.accept_scu_role,
                proposal.scp_role and policy.scp_role_accepted(pc.abstract_syntax),
            )
            if not (answer.scu_role or answer.scp_role):
                # No role left for either end: the context cannot be used.
                answers.append(PresentationContextAC(pc.context_id, USER_REJECTION, None))
                continue
            answered_roles[pc.abstract_syntax] = answer
            if answer.scp_role and not answer.scu_role and policy.prefer_requestor_order:
                # Only we send on this context (C-GET sub-operations): the
                # sender's preference decides, as the requestor's does when it
                # sends. Ours says what we can send -- we compress nothing, so
                # taking a requestor's "JPEG first" would fail every
                # uncompressed instance (dcmqrscp, too, answers in its order).
                chosen = _choose_syntax(pc.transfer_syntaxes, ours, False)
        answers.append(PresentationContextAC(pc.context_id, ACCEPTANCE, chosen))

    accepted_classes = {pc.abstract_syntax for pc, ac in zip(rq.presentation_contexts, answers)
                        if ac.result == ACCEPTANCE}
    extended: list[SOPClassExtendedNegotiation] = []
    if policy.extended_negotiation is not None:
        for item in rq_info.extended_negotiations:
            if item.sop_class_uid in accepted_classes:
                reply = policy.extended_negotiation(item)
                if reply is not None:
                    extended.append(SOPClassExtendedNegotiation(item.sop_class_uid, reply))

    # Asynchronous Operations Window (PS3.7 D.3.3.3): we invoke sub-operations
    # asynchronously up to what the requestor performs (0 = unlimited there)...
    window = None
    offered = rq_info.async_ops
    if offered is not None:
        invoke = _at_most(policy.max_async_invoked, offered.max_performed)
        # ... and we perform up to max_async_performed of the requestor's
        # operations (queued, one at a time, in order): a C-STORE SCU then
        # sends the next data sets while we store the first.
        perform = _at_most(offered.max_invoked, policy.max_async_performed)
        if invoke != 1 or perform != 1:
            window = AsyncOperationsWindow(invoke, perform)
    user_info = UserInformation(
        max_length=policy.max_pdu,
        implementation_class_uid=policy.implementation_class_uid,
        implementation_version_name=policy.implementation_version_name,
        async_ops=window,
        role_selections=tuple(answered_roles.values()),
        extended_negotiations=tuple(extended),
        user_identity=identity_ac,
    )
    return AAssociateAC(
        called_ae=rq.called_ae,
        calling_ae=rq.calling_ae,
        presentation_contexts=tuple(answers),
        user_information=user_info,
        application_context=rq.application_context,
        echo=rq.echo,
    )


# ------------------------------------------------------------------ result
@dataclass(frozen=True, slots=True)
class NegotiatedContext:
    """An accepted presentation context; ``as_scu``/``as_scp`` are *our* roles."""

    context_id: int
    abstract_syntax: str
    transfer_syntax: str
    as_scu: bool
    as_scp: bool


@dataclass(frozen=True)
class NegotiatedAssociation:
    """What both ends agreed, seen from one end (``is_requestor``).

    ``peer_max_pdu`` bounds the P-DATA-TF PDUs we send, ``our_max_pdu`` those we
    receive (0: no limit). ``max_invoked`` is how many operations or
    sub-operations we may have outstanding at once (PS3.7 D.3.3.3; 1 without
    an Asynchronous Operations Window, 0 for no limit).
    """

    is_requestor: bool
    calling_ae: str
    called_ae: str
    contexts: Mapping[int, NegotiatedContext]
    rejected: Mapping[int, int]  # context id -> PS3.8 Table 9-18 result
    our_max_pdu: int
    peer_max_pdu: int
    peer_implementation_class_uid: str | None
    peer_implementation_version_name: str | None
    user_identity_response: bytes | None = None
    extended_negotiations: tuple[SOPClassExtendedNegotiation, ...] = field(default=())
    max_invoked: int = 1

    @cached_property
    def scu_contexts(self) -> Mapping[str, tuple[NegotiatedContext, ...]]:
        """The accepted contexts we may send requests on (``as_scu``) by
        abstract syntax, each in context ID order (made once: a C-STORE SCU
        looks here for every instance)."""
        found: dict[str, list[NegotiatedContext]] = {}
        for ctx in sorted(self.contexts.values(), key=lambda c: c.context_id):
            if ctx.as_scu:
                found.setdefault(ctx.abstract_syntax, []).append(ctx)
        return {uid: tuple(ctxs) for uid, ctxs in found.items()}

    def context_for(
        self, abstract_syntax: str, transfer_syntax: str | None = None, *, role: str | None = None
    ) -> NegotiatedContext | None:
        """The first accepted context for ``abstract_syntax`` (and ``transfer_syntax``
        if given) in which we may act as ``role`` (``"scu"``/``"scp"``, if given)."""
        for ctx in sorted(self.contexts.values(), key=lambda c: c.context_id):
            if ctx.abstract_syntax != abstract_syntax:
                continue
            if transfer_syntax is not None and ctx.transfer_syntax != transfer_syntax:
                continue
            if role == "scu" and not ctx.as_scu or role == "scp" and not ctx.as_scp:
                continue
            return ctx
        return None


def _requestor_roles(proposal: RoleSelection | None, answer: RoleSelection | None) -> tuple[bool, bool]:
    """(requestor is SCU, requestor is SCP) after PS3.7 D.3.3.4."""
    if proposal is None or answer is None:
        return True, False
    return proposal.scu_role and answer.scu_role, proposal.scp_role and answer.scp_role


def negotiated_from(rq: AAssociateRQ, ac: AAssociateAC, *, is_requestor: bool) -> NegotiatedAssociation:
    """Combine an RQ and its AC into the :class:`NegotiatedAssociation` of one end.

    A context accepted with a transfer syntax that was not proposed for it
    raises PDUError (the AC breaks PS3.8 9.3.3.2).
    """
    proposed = {pc.context_id: pc for pc in rq.presentation_contexts}
    rq_roles = {r.sop_class_uid: r for r in rq.user_information.role_selections}
    ac_roles = {r.sop_class_uid: r for r in ac.user_information.role_selections}
    contexts: dict[int, NegotiatedContext] = {}
    rejected: dict[int, int] = {}
    for answer in ac.presentation_contexts:
        pc = proposed.get(answer.context_id)
        if pc is None:
            raise PDUError(f"A-ASSOCIATE-AC answers context id {answer.context_id}, which was not proposed")
        if answer.result != ACCEPTANCE:
            rejected[answer.context_id] = answer.result
            continue
        if answer.transfer_syntax not in pc.transfer_syntaxes:
            raise PDUError(f"A-ASSOCIATE-AC accepts context {answer.context_id} with transfer syntax "
                           f"{answer.transfer_syntax!r}, which was not proposed for it")
        req_scu, req_scp = _requestor_roles(rq_roles.get(pc.abstract_syntax), ac_roles.get(pc.abstract_syntax))
        as_scu, as_scp = (req_scu, req_scp) if is_requestor else (req_scp, req_scu)
        contexts[answer.context_id] = NegotiatedContext(
            answer.context_id, pc.abstract_syntax, answer.transfer_syntax, as_scu, as_scp
        )
    ours, theirs = (rq.user_information, ac.user_information)
    if not is_requestor:
        ours, theirs = theirs, ours
    identity = ac.user_information.user_identity
    return NegotiatedAssociation(
        is_requestor=is_requestor,
        calling_ae=rq.calling_ae,
        called_ae=rq.called_ae,
        contexts=contexts,
        rejected=rejected,
        our_max_pdu=ours.max_length or 0,
        peer_max_pdu=theirs.max_length or 0,
        peer_implementation_class_uid=theirs.implementation_class_uid,
        peer_implementation_version_name=theirs.implementation_version_name,
        user_identity_response=identity.server_response if isinstance(identity, UserIdentityAC) else None,
        extended_negotiations=ac.user_information.extended_negotiations,
        max_invoked=_max_invoked(rq.user_information.async_ops, ac.user_information.async_ops, is_requestor),
    )


def _at_most(a: int, b: int) -> int:
    """The smaller of two window sizes where 0 means unlimited."""
    return b if a == 0 else a if b == 0 else min(a, b)


def _max_invoked(rq: AsyncOperationsWindow | None, ac: AsyncOperationsWindow | None, is_requestor: bool) -> int:
    """Our invocation window (PS3.7 D.3.3.3): without the window in both the RQ
    and the AC everything is synchronous (1). The requestor invokes what it
    offered, as far as the acceptor performs; the acceptor what it answered,
    as far as the requestor performs."""
    if rq is None or ac is None:
        return 1
    if is_requestor:
        return _at_most(rq.max_invoked, ac.max_performed)
    return _at_most(ac.max_invoked, rq.max_performed)
