"""dicomnet.pdu.negotiation: building the RQ, answering it, and the negotiated result."""
from __future__ import annotations

import pytest

from dicomnet.errors import PDUError
from dicomnet.pdu import negotiation as ng
from dicomnet.pdu.items import (
    ABSTRACT_SYNTAX_NOT_SUPPORTED,
    ACCEPTANCE,
    TRANSFER_SYNTAXES_NOT_SUPPORTED,
    USER_REJECTION,
    PresentationContextAC,
    PresentationContextRQ,
    RoleSelection,
    SOPClassExtendedNegotiation,
    UserIdentityAC,
    UserIdentityRQ,
    UserInformation,
)
from dicomnet.pdu.pdus import AAssociateAC, AAssociateRJ, AAssociateRQ, decode_pdu, encode_pdu

VERIFICATION = "1.2.840.10008.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
STUDY_GET = "1.2.840.10008.5.1.4.1.2.2.3"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


def _roundtrip(pdu):
    raw = encode_pdu(pdu)
    return decode_pdu(raw[0], memoryview(raw)[6:])


def _rq(contexts=((CT, (EXPLICIT, IMPLICIT)),), **kw):
    return ng.build_associate_rq("SCU", "STORESCP", [(a, list(t)) for a, t in contexts], **kw)


def _policy(**kw):
    kw.setdefault("supported", {CT: (EXPLICIT, IMPLICIT), MR: (IMPLICIT,), VERIFICATION: (IMPLICIT,)})
    return ng.AcceptorPolicy("STORESCP", **kw)


# ------------------------------------------------------------------ requestor
def test_default_rq_proposes_38_default_syntaxes_with_odd_ids():
    from dicomnet.types.sop_classes import DEFAULT_ABSTRACT_SYNTAXES

    rq = ng.build_associate_rq("ME", "THEM")
    pcs = rq.presentation_contexts
    assert len(pcs) == len(DEFAULT_ABSTRACT_SYNTAXES) == 38
    assert [pc.context_id for pc in pcs] == list(range(1, 76, 2))
    assert [pc.abstract_syntax for pc in pcs] == [str(u) for u in DEFAULT_ABSTRACT_SYNTAXES]
    assert all(pc.transfer_syntaxes == (EXPLICIT, IMPLICIT) for pc in pcs)
    ui = rq.user_information
    assert ui.max_length == ng.DEFAULT_MAX_PDU
    assert ui.implementation_class_uid == ng.IMPLEMENTATION_CLASS_UID
    assert ui.implementation_version_name == ng.IMPLEMENTATION_VERSION_NAME
    assert (rq.calling_ae, rq.called_ae) == ("ME", "THEM")
    assert _roundtrip(rq) == rq


def test_rq_options_are_carried():
    identity = UserIdentityRQ(1, True, b"alice")
    rq = _rq(
        contexts=((CT, (JPEG_BASELINE,)), (VERIFICATION, (IMPLICIT,))),
        max_pdu=0,
        implementation_class_uid="1.2.3.4",
        implementation_version_name="X",
        role_selections=[(CT, False, True)],
        extended_negotiations=[SOPClassExtendedNegotiation(CT, b"\x01")],
        user_identity=identity,
    )
    assert [pc.context_id for pc in rq.presentation_contexts] == [1, 3]
    ui = rq.user_information
    assert ui.max_length == 0 and ui.implementation_class_uid == "1.2.3.4"
    assert ui.role_selections == (RoleSelection(CT, False, True),)
    assert ui.user_identity == identity
    assert _roundtrip(rq) == rq


def test_rq_limits():
    with pytest.raises(PDUError):
        _rq(contexts=())
    with pytest.raises(PDUError):
        ng.build_associate_rq("A", "B", [(CT, [IMPLICIT])] * 129)
    assert len(ng.build_associate_rq("A", "B", [(CT, [IMPLICIT])] * 128).presentation_contexts) == 128
    with pytest.raises(TypeError):
        ng.build_associate_rq("A", "B", [(CT, IMPLICIT)])


# ------------------------------------------------------------------- acceptor
def test_accept_picks_syntax_in_requestor_order_by_default():
    rq = _rq(contexts=((CT, (IMPLICIT, EXPLICIT)),))
    ac = ng.negotiate(rq, _policy())
    assert isinstance(ac, AAssociateAC)
    assert ac.presentation_contexts == (PresentationContextAC(1, ACCEPTANCE, IMPLICIT),)
    ac2 = ng.negotiate(rq, _policy(prefer_requestor_order=False))
    assert ac2.presentation_contexts == (PresentationContextAC(1, ACCEPTANCE, EXPLICIT),)
    assert (ac.called_ae, ac.calling_ae) == ("STORESCP", "SCU")
    assert ac.user_information.max_length == ng.DEFAULT_MAX_PDU
    assert ac.user_information.implementation_class_uid == ng.IMPLEMENTATION_CLASS_UID
    assert _roundtrip(ac) == ac


def test_per_context_results():
    rq = _rq(contexts=((CT, (JPEG_BASELINE,)), ("1.2.3.999", (IMPLICIT,)), (MR, (EXPLICIT, IMPLICIT))))
    ac = ng.negotiate(rq, _policy())
    assert [(p.context_id, p.result, p.transfer_syntax) for p in ac.presentation_contexts] == [
        (1, TRANSFER_SYNTAXES_NOT_SUPPORTED, None),
        (3, ABSTRACT_SYNTAX_NOT_SUPPORTED, None),
        (5, ACCEPTANCE, IMPLICIT),
    ]
    nego = ng.negotiated_from(rq, _roundtrip(ac), is_requestor=True)
    assert set(nego.contexts) == {5}
    assert nego.rejected == {1: TRANSFER_SYNTAXES_NOT_SUPPORTED, 3: ABSTRACT_SYNTAX_NOT_SUPPORTED}


def test_default_supported_covers_storage_and_qr_uncompressed():
    supported = ng.default_supported()
    assert supported[CT] == (EXPLICIT, IMPLICIT)
    assert STUDY_GET in supported and VERIFICATION in supported
    ac = ng.negotiate(_rq(contexts=((CT, (JPEG_BASELINE, IMPLICIT)),)), ng.AcceptorPolicy("STORESCP"))
    assert ac.presentation_contexts[0].transfer_syntax == IMPLICIT


def _rj(result, source, reason):
    return AAssociateRJ(result, source, reason)


@pytest.mark.parametrize(
    "rq_kw,policy_kw,expected",
    [
        # PS3.8 Table 9-21: called AE not recognised -> permanent, service-user, 7
        ({"called": "OTHER"}, {}, (1, 1, 7)),
        # calling AE not recognised -> permanent, service-user, 3
        ({}, {"allowed_calling_aes": {"FRIEND"}}, (1, 1, 3)),
        # application context name not supported -> permanent, service-user, 2
        ({"application_context": "1.2.3"}, {}, (1, 1, 2)),
        # protocol version not supported -> permanent, service-provider (ACSE), 2
        ({"protocol_version": 2}, {}, (1, 2, 2)),
        # more contexts than we take -> permanent, service-provider (presentation), 2
        ({}, {"max_contexts": 0}, (1, 3, 2)),
    ],
)
def test_association_rejections(rq_kw, policy_kw, expected):
    base = _rq()
    rq = AAssociateRQ(
        called_ae=rq_kw.get("called", base.called_ae),
        calling_ae=base.calling_ae,
        presentation_contexts=base.presentation_contexts,
        user_information=base.user_information,
        application_context=rq_kw.get("application_context", base.application_context),
        protocol_version=rq_kw.get("protocol_version", 1),
    )
    out = ng.negotiate(rq, _policy(**policy_kw))
    assert out == _rj(*expected)


def test_called_ae_may_be_ignored_and_is_compared_stripped():
    rq = ng.build_associate_rq("SCU", "ANY", [(CT, [IMPLICIT])])
    assert isinstance(ng.negotiate(rq, _policy(require_called_ae=False)), AAssociateAC)
    assert isinstance(ng.negotiate(rq, ng.AcceptorPolicy("ANY  ", supported={CT: (IMPLICIT,)})), AAssociateAC)
    ok = ng.negotiate(_rq(), _policy(allowed_calling_aes=["SCU"]))
    assert isinstance(ok, AAssociateAC)


@pytest.mark.parametrize("ids", [(1, 2), (1, 1), ()])
def test_bad_context_ids_reject(ids):
    base = _rq()
    rq = AAssociateRQ("STORESCP", "SCU", tuple(PresentationContextRQ(i, CT, (IMPLICIT,)) for i in ids),
                      base.user_information)
    assert ng.negotiate(rq, _policy()) == _rj(1, 2, 1)


def test_user_identity():
    seen = []

    def authenticate(identity):
        seen.append(identity)
        return b"ticket" if identity.primary_field in (b"alice", b"kerberos-ticket") else False

    kerberos = _rq(user_identity=UserIdentityRQ(3, True, b"kerberos-ticket"))
    ac = ng.negotiate(kerberos, _policy(authenticate=authenticate))
    assert ac.user_information.user_identity == UserIdentityAC(b"ticket")
    assert ng.negotiated_from(kerberos, _roundtrip(ac), is_requestor=True).user_identity_response == b"ticket"
    # A username (types 1 and 2) gets a zero-length server response, whatever
    # authenticate returned (PS3.7 Table D.3-15).
    alice = _rq(user_identity=UserIdentityRQ(1, True, b"alice"))
    assert ng.negotiate(alice, _policy(authenticate=authenticate)).user_information.user_identity == UserIdentityAC(b"")
    alice2 = _rq(user_identity=UserIdentityRQ(2, True, b"alice", b"s3cret"))
    assert ng.negotiate(alice2, _policy(authenticate=authenticate)).user_information.user_identity == UserIdentityAC(b"")
    # No positive response requested -> no user identity sub-item in the AC.
    quiet = _rq(user_identity=UserIdentityRQ(3, False, b"kerberos-ticket"))
    assert ng.negotiate(quiet, _policy(authenticate=authenticate)).user_information.user_identity is None
    # True (not bytes) -> an empty server response when one is requested.
    ac_true = ng.negotiate(kerberos, _policy(authenticate=lambda i: True))
    assert ac_true.user_information.user_identity == UserIdentityAC(b"")
    # Refused: an authorization failure, rejected-permanent, service-provider
    # (ACSE related function), no-reason-given (PS3.7 D.3.3.7).
    mallory = _rq(user_identity=UserIdentityRQ(1, True, b"mallory"))
    assert ng.negotiate(mallory, _policy(authenticate=authenticate)) == _rj(1, 2, 1)
    assert [i.primary_field for i in seen] == [b"kerberos-ticket", b"alice", b"alice", b"kerberos-ticket",
                                               b"mallory"]
    # Required but absent: the same.
    assert ng.negotiate(_rq(), _policy(require_user_identity=True)) == _rj(1, 2, 1)
    # No authenticator: the identity is not checked and not answered.
    assert ng.negotiate(mallory, _policy()).user_information.user_identity is None


# ---------------------------------------------------------------------- roles
def test_no_role_item_means_requestor_scu_acceptor_scp():
    rq = _rq()
    ac = ng.negotiate(rq, _policy())
    assert ac.user_information.role_selections == ()
    req = ng.negotiated_from(rq, ac, is_requestor=True).contexts[1]
    acc = ng.negotiated_from(rq, ac, is_requestor=False).contexts[1]
    assert (req.as_scu, req.as_scp) == (True, False)
    assert (acc.as_scu, acc.as_scp) == (False, True)


def test_c_get_scp_accepts_requestor_scp_role_for_storage():
    # A C-GET SCU offers to be the storage SCP for CT (PS3.7 D.3.3.4).
    rq = _rq(contexts=((STUDY_GET, (IMPLICIT,)), (CT, (IMPLICIT,))), role_selections=[(CT, False, True)])
    policy = _policy(supported={STUDY_GET: (IMPLICIT,), CT: (IMPLICIT,)}, accept_scp_role={CT})
    ac = _roundtrip(ng.negotiate(rq, policy))
    assert ac.user_information.role_selections == (RoleSelection(CT, False, True),)
    req = ng.negotiated_from(rq, ac, is_requestor=True)
    acc = ng.negotiated_from(rq, ac, is_requestor=False)
    assert (req.contexts[3].as_scu, req.contexts[3].as_scp) == (False, True)
    assert (acc.contexts[3].as_scu, acc.contexts[3].as_scp) == (True, False)
    assert (req.contexts[1].as_scu, req.contexts[1].as_scp) == (True, False)
    assert acc.context_for(CT, role="scu").context_id == 3
    assert acc.context_for(CT, role="scp") is None
    # A predicate works as well as a collection.
    ac2 = ng.negotiate(rq, _policy(supported=policy.supported, accept_scp_role=lambda uid: uid == CT))
    assert ac2.user_information.role_selections == (RoleSelection(CT, False, True),)


def test_a_context_only_we_send_on_takes_our_syntax_order():
    """C-GET: the requestor is the storage SCP and prefers JPEG Lossless; we
    send, compress nothing, and answer in our order (uncompressed first), as
    dcmqrscp does. Where the requestor sends (or both may), its order stays."""
    jpeg = "1.2.840.10008.1.2.4.70"
    supported = {CT: (EXPLICIT, IMPLICIT, jpeg), MR: (EXPLICIT, IMPLICIT, jpeg)}
    rq = _rq(contexts=((CT, (jpeg, EXPLICIT, IMPLICIT)), (MR, (jpeg, EXPLICIT))),
             role_selections=[(CT, False, True), (MR, True, True)])
    ac = ng.negotiate(rq, _policy(supported=supported, accept_scp_role={CT, MR}))
    assert [pc.transfer_syntax for pc in ac.presentation_contexts] == [EXPLICIT, jpeg]
    # Our own order decides there even when it puts JPEG first (a server holding JPEG files).
    ac_jpeg = ng.negotiate(rq, _policy(supported={CT: (jpeg, EXPLICIT), MR: (EXPLICIT,)}, accept_scp_role={CT}))
    assert ac_jpeg.presentation_contexts[0].transfer_syntax == jpeg
    # Without a role item the requestor sends: its order.
    plain = _rq(contexts=((CT, (jpeg, EXPLICIT)),))
    assert ng.negotiate(plain, _policy(supported=supported)).presentation_contexts[0].transfer_syntax == jpeg


def test_declined_only_role_rejects_the_context():
    rq = _rq(contexts=((CT, (IMPLICIT,)),), role_selections=[(CT, False, True)])
    ac = ng.negotiate(rq, _policy())  # we do not accept the requestor as SCP
    assert ac.presentation_contexts == (PresentationContextAC(1, USER_REJECTION, None),)
    assert ac.user_information.role_selections == ()


def test_acceptor_never_returns_a_role_that_was_not_proposed():
    rq = _rq(role_selections=[(CT, True, False)])
    ac = ng.negotiate(rq, _policy(accept_scp_role={CT}))
    assert ac.user_information.role_selections == (RoleSelection(CT, True, False),)
    rq_both = _rq(role_selections=[(CT, True, True)])
    ac_both = ng.negotiate(rq_both, _policy())  # SCP declined, SCU kept
    assert ac_both.user_information.role_selections == (RoleSelection(CT, True, False),)
    ctx = ng.negotiated_from(rq_both, ac_both, is_requestor=True).contexts[1]
    assert (ctx.as_scu, ctx.as_scp) == (True, False)


def test_role_item_not_returned_means_defaults():
    rq = _rq(role_selections=[(CT, False, True)])
    ac = AAssociateAC("STORESCP", "SCU", (PresentationContextAC(1, ACCEPTANCE, IMPLICIT),),
                      UserInformation(max_length=1000, implementation_class_uid="1.2.3"))
    ctx = ng.negotiated_from(rq, ac, is_requestor=True).contexts[1]
    assert (ctx.as_scu, ctx.as_scp) == (True, False)


# --------------------------------------------------------- extended, result
def test_extended_negotiation_answered_for_accepted_classes_only():
    rq = _rq(contexts=((CT, (IMPLICIT,)), ("1.2.3.999", (IMPLICIT,))),
             extended_negotiations=[SOPClassExtendedNegotiation(CT, b"\x01\x01"),
                                    SOPClassExtendedNegotiation("1.2.3.999", b"\x01")])
    ac = ng.negotiate(rq, _policy(extended_negotiation=lambda item: item.info[:1]))
    assert ac.user_information.extended_negotiations == (SOPClassExtendedNegotiation(CT, b"\x01"),)
    assert ng.negotiate(rq, _policy()).user_information.extended_negotiations == ()


def test_negotiated_limits_and_implementation():
    rq = _rq(max_pdu=32768, implementation_class_uid="1.2.826.1", implementation_version_name="REQ")
    ac = ng.negotiate(rq, _policy(max_pdu=4096, implementation_class_uid="1.2.826.2",
                                  implementation_version_name="ACC"))
    req = ng.negotiated_from(rq, ac, is_requestor=True)
    acc = ng.negotiated_from(rq, ac, is_requestor=False)
    assert (req.our_max_pdu, req.peer_max_pdu) == (32768, 4096)
    assert (acc.our_max_pdu, acc.peer_max_pdu) == (4096, 32768)
    assert (req.peer_implementation_class_uid, req.peer_implementation_version_name) == ("1.2.826.2", "ACC")
    assert (acc.peer_implementation_class_uid, acc.peer_implementation_version_name) == ("1.2.826.1", "REQ")
    assert req.is_requestor and not acc.is_requestor
    assert req.context_for(CT).transfer_syntax == EXPLICIT
    assert req.context_for(CT, IMPLICIT) is None
    assert req.context_for(MR) is None


def test_negotiated_from_refuses_an_inconsistent_ac():
    rq = _rq()
    bad_ts = AAssociateAC("STORESCP", "SCU", (PresentationContextAC(1, ACCEPTANCE, JPEG_BASELINE),),
                          UserInformation(max_length=0, implementation_class_uid="1.2.3"))
    with pytest.raises(PDUError, match="not proposed"):
        ng.negotiated_from(rq, bad_ts, is_requestor=True)
    bad_id = AAssociateAC("STORESCP", "SCU", (PresentationContextAC(3, ACCEPTANCE, IMPLICIT),),
                          UserInformation(max_length=0, implementation_class_uid="1.2.3"))
    with pytest.raises(PDUError, match="not proposed"):
        ng.negotiated_from(rq, bad_id, is_requestor=True)


def test_provider_check():
    assert ng.provider_check(_rq()) is None
    base = _rq()
    v3 = AAssociateRQ(base.called_ae, base.calling_ae, base.presentation_contexts, base.user_information,
                      protocol_version=3)
    assert ng.provider_check(v3) is None  # bit 0 set: version 1 supported


# ------------------------------------------- asynchronous operations window
def test_async_window_offered_by_a_c_get_scu_is_answered_and_bounds_the_acceptor():
    from dicomnet.pdu.items import AsyncOperationsWindow

    rq = _roundtrip(_rq(async_ops=AsyncOperationsWindow(1, 5)))
    assert rq.user_information.async_ops == AsyncOperationsWindow(1, 5)
    ac = _roundtrip(ng.negotiate(rq, _policy()))              # default: up to 8 sub-operations
    assert ac.user_information.async_ops == AsyncOperationsWindow(5, 1)   # no more than offered
    assert ng.negotiated_from(rq, ac, is_requestor=False).max_invoked == 5
    assert ng.negotiated_from(rq, ac, is_requestor=True).max_invoked == 1
    # Offered without limit (0): our own cap; a cap of 0 too: unlimited both ways.
    unlimited = _rq(async_ops=AsyncOperationsWindow(1, 0))
    assert ng.negotiate(unlimited, _policy()).user_information.async_ops == AsyncOperationsWindow(8, 1)
    ac0 = ng.negotiate(unlimited, _policy(max_async_invoked=0))
    assert ng.negotiated_from(unlimited, ac0, is_requestor=False).max_invoked == 0


def test_no_async_window_without_both_sides():
    from dicomnet.pdu.items import AsyncOperationsWindow

    plain = _rq()
    ac = ng.negotiate(plain, _policy())
    assert ac.user_information.async_ops is None                 # not offered: not answered
    assert ng.negotiated_from(plain, ac, is_requestor=False).max_invoked == 1
    offered = _rq(async_ops=AsyncOperationsWindow(1, 8))
    declined = ng.negotiate(offered, _policy(max_async_invoked=1))
    assert declined.user_information.async_ops is None
    assert ng.negotiated_from(offered, declined, is_requestor=False).max_invoked == 1
    assert ng.negotiated_from(offered, declined, is_requestor=True).max_invoked == 1


def test_async_window_offered_by_a_store_scu_lets_it_invoke_up_to_what_we_perform():
    from dicomnet.pdu.items import AsyncOperationsWindow

    def outcome(rq, policy):
        ac = _roundtrip(ng.negotiate(_roundtrip(rq), policy))
        return (ac.user_information.async_ops, ng.negotiated_from(rq, ac, is_requestor=True).max_invoked,
                ng.negotiated_from(rq, ac, is_requestor=False).max_invoked)

    plain = _rq()
    assert plain.user_information.async_ops is None                  # the default: no item (PS3.7 D.3.3.3)
    assert outcome(plain, ng.AcceptorPolicy("STORESCP")) == (None, 1, 1)
    eight = _rq(async_ops=AsyncOperationsWindow(8, 1))                # a C-STORE SCU invoking up to 8
    assert eight.user_information.async_ops == AsyncOperationsWindow(8, 1)
    # We perform up to 8 of theirs, invoke one at a time ourselves.
    assert outcome(eight, ng.AcceptorPolicy("STORESCP")) == (AsyncOperationsWindow(1, 8), 8, 1)
    assert outcome(eight, ng.AcceptorPolicy("STORESCP", max_async_performed=3)) == (AsyncOperationsWindow(1, 3), 3, 1)
    assert outcome(eight, ng.AcceptorPolicy("STORESCP", max_async_performed=1)) == (None, 1, 1)   # declined
    unlimited = _rq(async_ops=AsyncOperationsWindow(0, 1))            # 0: no limit asked
    assert outcome(unlimited, ng.AcceptorPolicy("STORESCP")) == (AsyncOperationsWindow(1, 16), 16, 1)
    # An AC with the item to an RQ without it changes nothing.
    ac = ng.negotiate(plain, ng.AcceptorPolicy("STORESCP"))
    ac = AAssociateAC(ac.called_ae, ac.calling_ae, ac.presentation_contexts,
                      UserInformation(max_length=0, async_ops=AsyncOperationsWindow(0, 0)))
    assert ng.negotiated_from(plain, ac, is_requestor=True).max_invoked == 1
