"""Load: many concurrent associations into a streaming store-scp, concurrent
C-FIND clients against the sample archive, and max_associations under pressure.

Sizes (to stay well under a minute on 2 cores): 32 associations x 100 C-STOREs
= 3200 instances of 4 sizes (0.5 KiB to 74 KiB of 16-bit pixels, ~25 KiB mean);
the store SCP is a ``dicomnet store-scp`` subprocess (its own GIL and core).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from dicomnet.client import Client
from dicomnet.dicom.writer import encode_dataset, encode_file_meta
from dicomnet.errors import AssociationRejected
from dicomnet.samples.synthetic import generate
from dicomnet.server import Server

from .conftest import CT, EXPLICIT, PACKAGE_ROOT, VERIFICATION, echo_ok, record, wait_for

ASSOCIATIONS = 32
PER_ASSOCIATION = 100
PLACEHOLDER = "1.2.826.0.1.3680043.9.7777.2.100000"
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"


def uid(n: int) -> str:
    return f"1.2.826.0.1.3680043.9.7777.2.{100000 + n}"   # same length as PLACEHOLDER


def templates() -> list[tuple[bytes, bytes]]:
    """(file meta part, data set part) for four sizes, with PLACEHOLDER as SOP Instance UID."""
    out = []
    for i, rows in enumerate((16, 48, 96, 192)):
        ds = next(generate(patients=1, studies=1, series=1, instances=1, rows=rows, cols=rows, seed=i))
        ds.SOPInstanceUID = PLACEHOLDER
        head = bytes(128) + b"DICM" + bytes(encode_file_meta(ds, EXPLICIT))
        out.append((head, bytes(encode_dataset(ds, EXPLICIT))))
    return out


def dataset_part(data: bytes) -> bytes:
    group_length = int.from_bytes(data[140:144], "little")
    return data[144 + group_length:]


@pytest.fixture(scope="module")
def instances(tmp_path_factory):
    """3200 Part 10 files with distinct SOP Instance UIDs: {uid: (path, sha256 of the data set)}."""
    base = tmp_path_factory.mktemp("load-src")
    made: dict[str, tuple[str, str]] = {}
    forms = templates()
    placeholder = PLACEHOLDER.encode()
    for n in range(ASSOCIATIONS * PER_ASSOCIATION):
        head, body = forms[n % len(forms)]
        u = uid(n).encode()
        head, body = head.replace(placeholder, u), body.replace(placeholder, u)
        path = base / f"{n}.dcm"
        path.write_bytes(head + body)
        made[u.decode()] = (str(path), hashlib.sha256(body).hexdigest())
    return made


def start_store_scp(out_dir: str, max_associations: int) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "dicomnet", "store-scp", "--port", "0", "--out", out_dir, "--aet", "LOADSCP",
         "--max-associations", str(max_associations), "--json", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=PACKAGE_ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    info = json.loads(line)
    assert info["event"] == "listening", line
    return proc, int(info["port"])


def peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0  # pragma: no cover


def test_32_associations_x_100_stores_arrive_once_and_identical(tmp_path, instances):
    out = tmp_path / "received"
    out.mkdir()
    proc, port = start_store_scp(str(out), ASSOCIATIONS + 4)
    uids = sorted(instances)
    batches = [uids[i::ASSOCIATIONS] for i in range(ASSOCIATIONS)]
    statuses: list[int] = []
    lock = threading.Lock()

    def run(batch: list[str]) -> int:
        client = Client("LOAD", dimse_timeout=30.0, read_timeout=30.0)
        with client.associate("127.0.0.1", port, "LOADSCP", contexts=[(CT, EXPLICIT)]) as assoc:
            got = [status for _, status, _ in assoc.store_many([instances[u][0] for u in batch])]
        with lock:
            statuses.extend(got)
        return len(got)

    t0 = time.monotonic()
    try:
        with ThreadPoolExecutor(ASSOCIATIONS) as pool:
            sent = sum(pool.map(run, batches))
        elapsed = time.monotonic() - t0
        rss = peak_rss_kib(proc.pid)
    finally:
        proc.terminate()
        proc.communicate(timeout=15)
    assert sent == len(instances) and all(s == 0 for s in statuses)
    names = sorted(os.listdir(out))
    assert len(names) == len(instances)                          # nothing lost, nothing extra
    assert len(set(names)) == len(names)                         # nothing duplicated
    mismatched = []
    for name in names:
        u = name[:-4]
        with open(out / name, "rb") as f:
            if hashlib.sha256(dataset_part(f.read())).hexdigest() != instances[u][1]:
                mismatched.append(u)
    assert not mismatched, mismatched[:5]
    total = sum(os.path.getsize(p) for p, _ in instances.values())
    record("load", stores=len(instances), associations=ASSOCIATIONS, lost=0, duplicated=0,
           mismatched=len(mismatched), store_seconds=round(elapsed, 2), megabytes=round(total / 1e6, 1),
           store_scp_peak_rss_mib=round(rss / 1024, 1))


FIND_CLIENTS = 24
FINDS_EACH = 10


def test_concurrent_find_clients_against_the_sample_archive():
    from dicomnet.dicom.dataset import Dataset
    from dicomnet.samples.archive import Archive
    from dicomnet.samples.server import SampleHandler

    archive = Archive.from_synthetic(patients=6, studies=3, series=2, instances=2, rows=8, cols=8)
    expected = {str(ds.StudyInstanceUID) for ds in archive.find(_study_query(Dataset()), "study")}
    assert len(expected) == 18
    srv = Server("ARCHIVE", SampleHandler(archive),
                 max_associations=FIND_CLIENTS + 4, read_timeout=20.0, dimse_timeout=20.0)
    srv.start("127.0.0.1", 0)

    def run(i: int) -> list[set[str]]:
        client = Client(f"FIND{i}", dimse_timeout=20.0, read_timeout=20.0)
        results = []
        with client.associate("127.0.0.1", srv.port, "ARCHIVE", contexts=[STUDY_FIND]) as assoc:
            for _ in range(FINDS_EACH):
                result = assoc.find(_study_query(Dataset()), model="study")
                results.append({str(ds.StudyInstanceUID) for ds in result})
                assert result.status == 0
        return results

    t0 = time.monotonic()
    try:
        with ThreadPoolExecutor(FIND_CLIENTS) as pool:
            all_results = [r for rs in pool.map(run, range(FIND_CLIENTS)) for r in rs]
    finally:
        srv.shutdown(5.0)
    elapsed = time.monotonic() - t0
    assert len(all_results) == FIND_CLIENTS * FINDS_EACH
    assert all(r == expected for r in all_results)
    record("load", find_clients=FIND_CLIENTS, finds=len(all_results),
           find_matches=len(all_results) * len(expected), find_seconds=round(elapsed, 2))


def _study_query(ds):
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = ""
    ds.PatientID = ""
    return ds


def test_max_associations_excess_is_rejected_transient_not_hung():
    limit = 4
    srv = Server("LIMITED", None, max_associations=limit, artim_timeout=1.0, read_timeout=10.0)
    srv.start("127.0.0.1", 0)
    held = []
    try:
        for i in range(limit):
            held.append(Client(f"HOLD{i}").associate("127.0.0.1", srv.port, "LIMITED", contexts=[VERIFICATION]))
        assert wait_for(lambda: srv.active_associations == limit)
        rejected = 0
        for i in range(6):
            t0 = time.monotonic()
            with pytest.raises(AssociationRejected) as info:
                Client(f"EXCESS{i}", artim_timeout=5.0).associate("127.0.0.1", srv.port, "LIMITED",
                                                                 contexts=[VERIFICATION])
            assert time.monotonic() - t0 < 1.0
            # PS3.8 Table 9-21: rejected-transient, service-provider (presentation), local limit exceeded.
            assert (info.value.result, info.value.source, info.value.reason) == (2, 3, 2)
            rejected += 1
        for assoc in held:
            assoc.release()
        assert wait_for(lambda: srv.active_associations == 0, 3.0)
        assert echo_ok(srv.port, "LIMITED")
    finally:
        for assoc in held:
            assoc.abort()
        srv.shutdown(5.0)
    record("load", max_associations=limit, excess_rejected_transient=rejected)
