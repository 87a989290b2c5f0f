"""The sample Query/Retrieve SCP: an :class:`~dicomnet.samples.archive.Archive`
behind a :class:`dicomnet.Server`.

:class:`SampleHandler` serves

* C-ECHO;
* C-FIND in the Patient Root and Study Root models, at all four levels
  (:meth:`Archive.find`; the model comes from the presentation context's
  abstract syntax), checking ``ctx.cancelled`` between matches (C-CANCEL);
  each match is Pending 0xFF00, or 0xFF01 when the archive ignored an
  optional key it does not support (PS3.4 C.2.2.1.3);
* C-STORE: new instances join the archive (a duplicate SOP Instance UID keeps
  the first copy and still answers Success, as Orthanc does);
* C-MOVE to the AE titles of ``destinations`` (``{AE: (host, port)}``) and
  C-GET, both through :meth:`Archive.instances_for`; an unknown move
  destination is answered 0xA801 by the server.

Every request is logged on ``logger`` with ``extra={"event": ..., ...}``
fields, so a JSON log formatter (see :class:`JsonLogFormatter`) writes one
structured object per record.

>>> from dicomnet import Server
>>> from dicomnet.samples import Archive
>>> handler = SampleHandler(Archive.from_synthetic(patients=1), {"ORTHANC": ("127.0.0.1", 4242)})
>>> server = Server("SAMPLE", handler, destinations=handler.destinations)   # doctest: +SKIP
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from dicomnet.samples.archive import Archive
from dicomnet.types.status import PENDING_WARNING

if TYPE_CHECKING:
    from dicomnet.dicom.dataset import Dataset
    from dicomnet.interfaces.handlers import AssociationInfo, ServiceContext

__all__ = ["SampleHandler", "JsonLogFormatter", "parse_destination", "load_destinations", "QR_SOP_CLASSES"]

# Q/R FIND/MOVE/GET SOP classes -> the archive's information model.
_MODELS = {
    "1.2.840.10008.5.1.4.1.2.1.1": "patient", "1.2.840.10008.5.1.4.1.2.1.2": "patient",
    "1.2.840.10008.5.1.4.1.2.1.3": "patient",
    "1.2.840.10008.5.1.4.1.2.2.1": "study", "1.2.840.10008.5.1.4.1.2.2.2": "study",
    "1.2.840.10008.5.1.4.1.2.2.3": "study",
}
#: The Q/R SOP classes the sample handler serves (Patient and Study Root FIND, MOVE, GET).
QR_SOP_CLASSES: tuple[str, ...] = tuple(_MODELS)


_RETRIEVE_AE_TITLE = 0x00080054


def _model(ctx: ServiceContext) -> str:
    """The information model of the request (0x0122 from the server if unknown)."""
    from dicomnet.errors import QueryError

    model = _MODELS.get(ctx.sop_class_uid) or _MODELS.get(ctx.abstract_syntax)
    if model is None:
        raise QueryError(f"SOP class {ctx.sop_class_uid} is not a Patient/Study Root Q/R model", 0xA900)
    return model


def parse_destination(text: str) -> tuple[str, tuple[str, int]]:
    """``AET=HOST:PORT`` as ``(AET, (host, port))``; ValueError when malformed."""
    from dicomnet.pdu.pdus import validate_ae_title

    ae, sep, address = text.partition("=")
    host, colon, port_text = address.rpartition(":")
    if not sep or not colon or not host or not port_text.isdigit():
        raise ValueError(f"a destination is AET=HOST:PORT, not {text!r}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"destination port out of range in {text!r}")
    return validate_ae_title(ae.strip(), "destination AE title"), (host.strip("[]"), port)


def load_destinations(path: str) -> dict[str, tuple[str, int]]:
    """A JSON file of destinations: ``{"AET": "host:port" | ["host", port] |
    {"host": ..., "port": ...}}``."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a JSON object of AE title -> address")
    out: dict[str, tuple[str, int]] = {}
    for ae, value in data.items():
        if isinstance(value, str):
            text = f"{ae}={value}"
        elif isinstance(value, list) and len(value) == 2:
            text = f"{ae}={value[0]}:{value[1]}"
        elif isinstance(value, Mapping) and "port" in value:
            text = f"{ae}={value.get('host', '127.0.0.1')}:{value['port']}"
        else:
            raise ValueError(f"{path}: bad address for {ae!r}: {value!r}")
        name, address = parse_destination(text)
        out[name] = address
    return out


class SampleHandler:
    """Echo, find, store, move and get over one :class:`Archive` (see the module docstring).

    ``destinations`` maps C-MOVE destination AE titles to ``(host, port)``;
    ``logger`` gets one record per request. Thread safe (the archive locks).
    """

    def __init__(self, archive: Archive, destinations: Mapping[str, tuple[str, int]] | None = None,
                 logger: logging.Logger | None = None) -> None:
        self.archive = archive
        self.destinations: dict[str, tuple[str, int]] = dict(destinations or {})
        self.logger = logger or logging.getLogger("dicomnet.sample")

    def _log(self, ctx: ServiceContext | None, event: str, message: str, *args: Any,
             severity: int = logging.INFO, **fields: Any) -> None:
        extra: dict[str, Any] = {"event": event, **fields}
        if ctx is not None:
            extra.update(calling_ae=ctx.calling_ae, message_id=ctx.message_id)
        self.logger.log(severity, message, *args, extra={"fields": extra})

    # ---------------------------------------------------------------- services
    def on_association(self, info: AssociationInfo) -> None:
        """Log the accepted association."""
        peer = f"{info.peer_address[0]}:{info.peer_address[1]}" if info.peer_address else "?"
        self._log(None, "association", "association from %s (%s) accepted, %d context(s)", info.calling_ae,
                  peer, len(info.negotiated.contexts), calling_ae=info.calling_ae, peer=peer)

    def on_echo(self, ctx: ServiceContext) -> int:
        """C-ECHO: Success."""
        self._log(ctx, "echo", "C-ECHO from %s", ctx.calling_ae)
        return 0

    def on_store(self, ctx: ServiceContext, dataset: Dataset) -> int:
        """C-STORE: add the instance to the archive (the data set owns its buffer)."""
        added = self.archive.add(dataset)
        self._log(ctx, "store", "C-STORE %s from %s%s", ctx.sop_instance_uid, ctx.calling_ae,
                  "" if added else " (duplicate, first copy kept)", sop_instance_uid=ctx.sop_instance_uid,
                  added=added)
        return 0

    def on_find(self, ctx: ServiceContext, query: Dataset) -> Iterator[Dataset | tuple[int, Dataset]]:
        """C-FIND: the archive's matches, stopping at a C-CANCEL. When the
        archive ignored a key (:attr:`~dicomnet.samples.archive.Matches.ignored`)
        each match comes as ``(0xFF01, Dataset)``: Pending, "one or more
        Optional Keys were not supported"; otherwise as the Dataset (0xFF00)."""
        model = _model(ctx)
        started = time.perf_counter()
        matches = self.archive.find(query, model)   # raises QueryError before the first yield
        # (An Archive subclass's find may return a plain iterator: no key ignored.)
        ignored = tuple(getattr(matches, "ignored", ()))
        level = str(query.get("QueryRetrieveLevel") or "").strip()
        return self._find_results(ctx, matches, model, level, started, ignored)

    def _find_results(self, ctx: ServiceContext, matches: Iterator[Dataset], model: str, level: str,
                      started: float, ignored: tuple[int, ...]) -> Iterator[Dataset | tuple[int, Dataset]]:
        sent = 0
        # Each response names where its entity can be retrieved from: us
        # (Retrieve AE Title, PS3.4 C.4.1.1.3.2), as the peer called us.
        retrieve_ae = str(ctx.called_ae or "").strip() or None
        try:
            for ds in matches:
                if ctx.cancelled:
                    break
                if retrieve_ae is not None:
                    ds.set(_RETRIEVE_AE_TITLE, retrieve_ae, "AE")
                sent += 1
                yield (PENDING_WARNING, ds) if ignored else ds
        finally:        # also when the server closes the generator after a C-CANCEL
            self._log_find(ctx, model, level, sent, started, ignored)

    def _log_find(self, ctx: ServiceContext, model: str, level: str, sent: int, started: float,
                  ignored: tuple[int, ...]) -> None:
        keys = [f"({tag >> 16:04X},{tag & 0xFFFF:04X})" for tag in ignored]
        self._log(ctx, "find", "C-FIND %s/%s from %s: %d match(es)%s%s in %.1f ms", model, level, ctx.calling_ae,
                  sent, f", ignoring key(s) {' '.join(keys)}" if keys else "",
                  " (cancelled)" if ctx.cancelled else "", (time.perf_counter() - started) * 1000,
                  model=model, level=level, matches=sent, cancelled=ctx.cancelled, ignored=keys)

    def on_move(self, ctx: ServiceContext, query: Dataset, destination_ae: str) -> tuple[Any, list[Any]]:
        """C-MOVE: ``(address or None, instances)``."""
        address = self.destinations.get(destination_ae.strip())
        if address is None:
            self._log(ctx, "move", "C-MOVE from %s to unknown destination %r", ctx.calling_ae, destination_ae,
                      severity=logging.WARNING, destination=destination_ae, instances=0)
            return None, []
        instances = self.archive.instances_for(query, _model(ctx))
        self._log(ctx, "move", "C-MOVE from %s: %d instance(s) to %s at %s:%d", ctx.calling_ae, len(instances),
                  destination_ae, address[0], address[1], destination=destination_ae,
                  instances=len(instances))
        return address, instances

    def on_get(self, ctx: ServiceContext, query: Dataset) -> list[Any]:
        """C-GET: the instances to send back on the requestor's association."""
        instances = self.archive.instances_for(query, _model(ctx))
        self._log(ctx, "get", "C-GET from %s: %d instance(s)", ctx.calling_ae, len(instances),
                  instances=len(instances))
        return instances


class JsonLogFormatter(logging.Formatter):
    """One JSON object per log record: time (UTC, ISO 8601), level, logger,
    message, the handler's ``fields`` and the exception text if any."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                    + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            for key, value in fields.items():
                obj.setdefault(key, value)
        if record.exc_info:
            obj["exception"] = self.formatException(record.exc_info)
        return json.dumps(obj, ensure_ascii=False, default=str)
