"""Simulated SEPA bank gateway: takes pain.008/pain.001 batches, settles them, returns items.

A batch is validated against the ``sepaxml`` XSD (a file that fails answers group status
``RJCT`` with ``FF01``), each IBAN is checked (``AC01`` rejects that item), and the accepted items
stay ``PDNG``. With ``auto_complete`` the batch settles after the ``settle_delay_ms`` knob: each
item becomes ``ACSC`` (``transaction.settled``) or, when ``decline_mix`` drew an R-code for it at
submission, ``RTND`` with that code (``transaction.returned``). The admin ``complete`` call
settles, rejects (``failed`` + ``code``) or returns (``returned`` + ``code``, after settlement)
one item by end-to-end id. A file with a ``MsgId`` already taken answers its first status report
again, as a bank's duplicate-file check would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web
from lxml import etree
from stdnum import iban as stdnum_iban

from adapters.base import decimal_to_minor
from adapters.sepa import sign_notification
from adapters.sepa import transformers as t
from adapters.simulator.providers import new_id, now

if TYPE_CHECKING:
    from adapters.simulator.server import Simulator

DEFAULT_SECRET = "sepa-simulator-hmac-key"  # noqa: S105 - the simulator's public test key
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def _text(node: Any, path: str, ns: dict[str, str]) -> str:
    found = node.find(path, ns)
    return (found.text or "") if found is not None else ""


class SepaSim:
    """Stateful SEPA transactions keyed by end-to-end id, and batches keyed by MsgId."""

    name = "sepa"

    def __init__(self, sim: Simulator) -> None:
        """Bind to the simulator."""
        self.sim = sim
        self.items: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}

    def reset(self) -> None:
        """Forget everything."""
        self.items.clear()
        self.batches.clear()

    def routes(self) -> list[web.RouteDef]:
        """The gateway's endpoints under ``/sepa``."""
        return [
            web.post("/sepa/v1/batches", self.submit),
            web.get("/sepa/v1/transactions/{e2e}", self.transaction),
        ]

    @staticmethod
    def _view(item: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in item.items() if not k.startswith("_")}

    def _notify(self, item: dict[str, Any], event_type: str) -> None:
        payload = msgspec.json.encode(
            {"id": new_id("evt_sepa_"), "type": event_type, "created": now(), "transaction": self._view(item)}
        )
        secret = self.sim.secret(self.name, DEFAULT_SECRET)
        # Each copy is signed afresh (new timestamp) and carries the same event id.
        self.sim.emit(
            self.name,
            lambda: (
                payload,
                {"Content-Type": "application/json", "Sepa-Signature": sign_notification(secret, payload)},
            ),
        )

    async def submit(self, request: web.Request) -> web.Response:
        """``POST /v1/batches``: a pain.008 or pain.001 document."""
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return web.json_response({"error": "unauthorized"}, status=401)
        raw = await request.read()
        try:
            root = etree.fromstring(raw, _PARSER)
            version = etree.QName(root).namespace.rsplit(":", 1)[-1]
            if version not in {"pain.008.001.08", "pain.008.001.02", "pain.001.001.09", "pain.001.001.03"}:
                raise ValueError(version)
            t.validate_xml(raw, version)
        except Exception:  # any unreadable or non-conforming file is FF01, as a bank answers
            return web.json_response(
                {"batch_id": new_id("bat_"), "msg_id": "", "group_status": "RJCT", "reason_code": "FF01"}
            )
        ns = {"p": f"urn:iso:std:iso:20022:tech:xsd:{version}"}
        msg_id = _text(root, ".//p:GrpHdr/p:MsgId", ns)
        if msg_id in self.batches:
            return web.json_response(self.batches[msg_id])
        debit = version.startswith("pain.008")
        batch_id = new_id("bat_")
        answers = []
        tx_path = ".//p:DrctDbtTxInf" if debit else ".//p:CdtTrfTxInf"
        party = "p:Dbtr" if debit else "p:Cdtr"
        account = "p:DbtrAcct/p:Id/p:IBAN" if debit else "p:CdtrAcct/p:Id/p:IBAN"
        for tx in root.iterfind(tx_path, ns):
            amount_node = tx.find(".//p:InstdAmt", ns) if debit else tx.find(".//p:Amt/p:InstdAmt", ns)
            counter_iban = _text(tx, account, ns)
            item = {
                "end_to_end_id": _text(tx, "p:PmtId/p:EndToEndId", ns),
                "status": "PDNG",
                "kind": "direct_debit" if debit else "credit_transfer",
                "amount": decimal_to_minor(amount_node.text, 2),
                "currency": amount_node.get("Ccy", "EUR"),
                "reason_code": None,
                "r_type": None,
                "counterparty_name": _text(tx, f"{party}/p:Nm", ns),
                "counterparty_iban": counter_iban,
                "batch_id": batch_id,
                "_decision": self.sim.decide(self.name, "AM04") if debit else None,
                # The MsgId is the bank's duplicate check, derived from the caller's key.
                "_msg_id": msg_id,
            }
            if not stdnum_iban.is_valid(counter_iban):
                item.update(status="RJCT", reason_code="AC01", r_type="reject")
            self.items[item["end_to_end_id"]] = item
            answers.append(self._view(item))
        answer = {"batch_id": batch_id, "msg_id": msg_id, "group_status": "ACTC", "transactions": answers}
        self.batches[msg_id] = answer
        knobs = self.sim.knobs(self.name)
        if knobs.auto_complete:
            ids = [a["end_to_end_id"] for a in answers]
            self.sim.schedule(knobs.settle_delay_ms / 1000.0, lambda: self._settle_all(ids))
        return web.json_response(answer)

    def _settle_all(self, ids: list[str]) -> None:
        for e2e in ids:
            self._finish(self.items[e2e], None)

    def _finish(self, item: dict[str, Any], body: dict[str, Any] | None) -> dict[str, Any]:
        wanted = (body or {}).get("status")
        code = (body or {}).get("code")
        if wanted == "returned" and item["status"] in {"PDNG", "ACSC"}:
            item.update(status="RTND", reason_code=str(code or "MS03"), r_type=(body or {}).get("r_type", "return"))
            self._notify(item, "transaction.returned")
        elif wanted == "failed" and item["status"] == "PDNG":
            item.update(status="RJCT", reason_code=str(code or "MS02"), r_type=(body or {}).get("r_type", "refusal"))
            self._notify(item, "transaction.rejected")
        elif item["status"] == "PDNG" and wanted in {None, "succeeded"}:
            drawn = item["_decision"] if wanted is None else None
            if drawn:
                # Settled, then bounced by the debtor's bank (pacs.004) with the drawn R-code.
                item.update(status="RTND", reason_code=drawn, r_type="return")
                self._notify(item, "transaction.returned")
            else:
                item["status"] = "ACSC"
                # Settlement is when the money moves: the debit is collected (a sale) or the
                # credit transfer (a refund, or a payout) is paid out.
                self.sim.books.record(
                    self.name,
                    "authorize" if item["kind"] == "direct_debit" else "refund",
                    object_id=item["end_to_end_id"],
                    amount=int(item["amount"]),
                    currency=str(item["currency"]),
                    captured=item["kind"] == "direct_debit",
                    idempotency_key=item.get("_msg_id"),
                )
                self._notify(item, "transaction.settled")
        return self._view(item)

    async def complete(self, ref: str, body: dict[str, Any]) -> dict[str, Any]:
        """Admin: settle (``succeeded``), reject (``failed``) or return (``returned``) one item."""
        item = self.items.get(ref)
        if item is None:
            raise KeyError(ref)
        return self._finish(item, body)

    async def transaction(self, request: web.Request) -> web.Response:
        """``GET /v1/transactions/{end_to_end_id}``."""
        item = self.items.get(request.match_info["e2e"])
        if item is None:
            return web.json_response({"error": "not_found"}, status=404)
        return web.json_response(self._view(item))
