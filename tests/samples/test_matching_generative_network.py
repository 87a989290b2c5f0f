"""C-FIND matching over loopback, on random archives and Identifiers drawn with hypothesis.

dicomnet's :class:`Client` queries a :class:`SampleHandler` server and a worklist server
built on :func:`compile_query` (conftest.py's ``scps``), so the Identifiers are encoded,
sent and decoded in their character sets; the answers are checked as in the in-process
tests. With real peers (``peers``), dcmqrscp on a fixed ASCII archive must give every
answer the standard alone decides.

Peer faults: none new. dcmqrscp gave every answer the standard decides on
its archive (ASCII, keys it supports, no Required Key of zero length, no
``""`` keys: the grid test's docstring lists its deviations there).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomnet import Client
from dicomnet.dicom import write_file
from dicomnet.samples.archive import Archive
from tests.integration.peers import HOST, Dcmqrscp
from tests.integration.test_qr_matching_differential import UNIQUE
from tests.samples._matching_generative import (
    EXPLICIT, SETTINGS, Gen, Node, Picker, Scp, build_archive, check_qr, check_worklist, instance_datasets, make_tree,
    make_worklist, norm, qr_expected, qr_query, record, show, worklist_query,
)
from tests.samples._matching_oracle import DICOMNET, LEVEL_KEYS, NEUTRAL, PATIENT_KEYS


@settings(max_examples=60, **SETTINGS)
@given(data=st.data())
def test_sample_server_answers_like_the_oracle_over_the_network(data: Any, scps: tuple[Scp, Scp]) -> None:
    """The same checks on what dicomnet's Client receives from a SampleHandler server (the
    Identifiers encoded, sent and decoded in their character sets)."""
    pick, gen = Picker(data), Gen(whole_sequences=False)
    tree = make_tree(pick, gen)
    sample, _ = scps
    sample.handler.archive = build_archive(tree)
    for _ in range(2):
        query = qr_query(pick, tree, gen)
        problems = check_qr(sample.find(query), tree, query, DICOMNET, network=True)
        assert not problems, show(query) + "\n" + "\n".join(problems)


@settings(max_examples=40, **SETTINGS)
@given(data=st.data())
def test_worklist_over_the_network(data: Any, scps: tuple[Scp, Scp]) -> None:
    """Worklist C-FIND through dicomnet's Client to a Server matching with compile_query."""
    pick, gen = Picker(data), Gen(whole_sequences=False)
    entries = make_worklist(pick, gen)
    _, worklist = scps
    worklist.handler.records = [record(e) for e in entries]
    query = worklist_query(pick, entries, gen)
    problems = check_worklist(worklist.find(query), entries, query, network=True)
    assert not problems, show(query) + "\n" + "\n".join(problems)


# The keys dcmqrscp matches on (the grid test lists those it ignores), and archives without
# what it handles otherwise by choice or deviation: non-ASCII text ("?" on UTF-8 bytes),
# Required Keys of zero length (C.2.2.1.2), '""' keys (Empty Value Matching).
DCMQRSCP_KEYS = {"PATIENT": PATIENT_KEYS[:3], "STUDY": LEVEL_KEYS["STUDY"][:6], "SERIES": ("Modality", "SeriesNumber"),
                 "IMAGE": ("InstanceNumber",)}
DCMQRSCP_GEN = Gen(charsets=("",), empty_required=False, whole_sequences=False, empty_value=False,
                   keys=DCMQRSCP_KEYS, patients=(3,))


@pytest.fixture(scope="module")
def dcmqrscp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[Node], Any, Archive]]:
    tree = make_tree(Picker(seed=20240607), DCMQRSCP_GEN)
    folder = tmp_path_factory.mktemp("gen-dcmqrscp")
    paths = []
    for n, ds in enumerate(instance_datasets(tree)):
        paths.append(folder / f"{n}.dcm")
        write_file(paths[-1], ds, EXPLICIT)
    with Dcmqrscp(preload=paths) as qr:
        assoc = Client("GENSCU", dimse_timeout=20).associate(HOST, qr.port, qr.aet)
        try:
            yield tree, assoc, build_archive(tree)
        finally:
            if assoc.is_established:
                assoc.release()


@pytest.mark.peers
@settings(max_examples=120, **SETTINGS)
@given(data=st.data())
def test_dcmqrscp_agrees_where_the_standard_decides(data: Any, dcmqrscp: tuple[list[Node], Any, Archive]) -> None:
    """dcmqrscp and the sample server on one fixed ASCII archive: dcmqrscp must give every
    answer the standard alone decides (NEUTRAL choices); the sample server, the oracle's."""
    tree, assoc, archive = dcmqrscp
    query = qr_query(Picker(data), tree, DCMQRSCP_GEN)
    want = qr_expected(tree, query, NEUTRAL)
    got = {norm(ds.get(UNIQUE[query.level]))[0] for ds in assoc.find(query.dataset(), model=query.model)}
    wrong = {uid: v for uid, v in want.items() if v is not None and v != (uid in got)}
    assert not wrong, show(query) + f"\ndcmqrscp answered {sorted(got)}; PS3.4 differs for {wrong}"
    problems = check_qr(list(archive.find(query.dataset(), query.model)), tree, query, DICOMNET)
    assert not problems, show(query) + "\n" + "\n".join(problems)
