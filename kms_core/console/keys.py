"""Key lists, the key detail page and its actions."""
from __future__ import annotations

import base64
import binascii
import time
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kms_core.errors import KMSError

from . import audit_view, wizard
from .sessions import Session

PAGE_SIZES = (10, 25, 50, 100)
TABS = ("config", "policy", "crypto", "tags", "rotation", "aliases", "grants", "material", "use", "events")
GRANT_OPERATIONS = ("Decrypt", "Encrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "ReEncryptFrom",
                    "ReEncryptTo", "CreateGrant", "RetireGrant", "DescribeKey", "GenerateDataKeyPair",
                    "GenerateDataKeyPairWithoutPlaintext", "Sign", "Verify", "GetPublicKey",
                    "GenerateMac", "VerifyMac", "DeriveSharedSecret")
_INDEX_TTL = 15.0  # seconds a principal's key/alias index is reused between page views (Refresh renews it)


def _bad(message: str) -> KMSError:
    return KMSError("ValidationException", message)


def parse_pairs(text: str, what: str) -> dict[str, str]:
    """``key=value`` lines (encryption context, tags)."""
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        k, sep, v = line.partition("=")
        if not sep or not k.strip():
            raise _bad(f"Line {n} of the {what} is not key=value.")
        out[k.strip()] = v.strip()
    return out


def is_asymmetric(spec: str | None) -> bool:
    return bool(spec) and not str(spec).startswith(("SYMMETRIC", "HMAC"))


class KeyIndex:
    """Every key id with its aliases, as one principal sees them (ListKeys + ListAliases),
    reused for a few seconds so paging and sorting 10 000 keys stay fast."""

    def __init__(self):
        self._cache: dict[str, tuple[float, list[dict]]] = {}

    def invalidate(self) -> None:
        self._cache.clear()

    def rows(self, con, request: Request, session: Session) -> list[dict]:
        hit = self._cache.get(session.principal)
        if hit is not None and time.monotonic() - hit[0] < _INDEX_TTL:
            return hit[1]
        call = con.backend.call
        keys: list[dict] = []
        marker = None
        while True:
            p: dict[str, Any] = {"Limit": 1000}
            if marker:
                p["Marker"] = marker
            r = call("ListKeys", p, con.context(request, session))
            keys.extend(r.get("Keys", []))
            marker = r.get("NextMarker")
            if not r.get("Truncated") or not marker:
                break
        names: dict[str, list[str]] = {}
        marker = None
        while True:
            p = {"Limit": 100}
            if marker:
                p["Marker"] = marker
            r = call("ListAliases", p, con.context(request, session))
            for a in r.get("Aliases", []):
                if a.get("TargetKeyId"):
                    names.setdefault(a["TargetKeyId"], []).append(a["AliasName"])
            marker = r.get("NextMarker")
            if not r.get("Truncated") or not marker:
                break
        rows = []
        for k in keys:
            aliases = sorted(names.get(k["KeyId"], []))
            rows.append({"key_id": k["KeyId"], "arn": k["KeyArn"], "aliases": aliases,
                         "aws_managed": any(a.startswith("alias/aws/") for a in aliases),
                         "search": " ".join([k["KeyId"], *aliases]).lower()})
        if len(self._cache) > 100:
            self._cache.clear()
        self._cache[session.principal] = (time.monotonic(), rows)
        return rows


def _int(value: Any, default: int, lo: int, hi: int) -> int:
    try:
        return min(hi, max(lo, int(str(value))))
    except ValueError:
        return default


class KeyViews:
    def __init__(self, con):
        self.con = con
        self.index = KeyIndex()
        self.con.key_index = self.index

    async def customer_keys(self, request: Request) -> Response:
        return await self.key_list(request, managed=False)

    async def aws_keys(self, request: Request) -> Response:
        return await self.key_list(request, managed=True)

    async def key_list(self, request: Request, managed: bool) -> Response:
        session = await self.con.session(request)
        qp = request.query_params
        q = qp.get("q", "").strip()[:256]
        sort = qp.get("sort", "alias") if qp.get("sort") in ("alias", "keyid") else "alias"
        desc = qp.get("order") == "desc"
        size = _int(qp.get("size"), 25, 1, 100)
        size = size if size in PAGE_SIZES else 25
        page = _int(qp.get("page"), 1, 1, 10**6)
        error = None
        rows: list[dict] = []
        total = 0
        if qp.get("refresh"):
            self.index.invalidate()
        try:
            all_rows = await run_in_threadpool(self.index.rows, self.con, request, session)
            needle = q.lower()
            chosen = [r for r in all_rows if r["aws_managed"] == managed and (not needle or needle in r["search"])]
            if sort == "alias":
                chosen.sort(key=lambda r: (not r["aliases"], r["aliases"][0] if r["aliases"] else "", r["key_id"]),
                            reverse=desc)
            else:
                chosen.sort(key=lambda r: r["key_id"], reverse=desc)
            total = len(chosen)
            page = min(page, max(1, -(-total // size)))
            rows = [dict(r) for r in chosen[(page - 1) * size: page * size]]
            await run_in_threadpool(_describe_rows, self.con, request, session, rows)
        except KMSError as e:
            error = {"kind": "error", "code": e.code, "text": e.message}
        pages = max(1, -(-total // size))
        return await self.con.render(request, "keys.html", session, nav="aws" if managed else "customer",
                                managed=managed, rows=rows, total=total, q=q, sort=sort, desc=desc, size=size,
                                page=page, pages=pages, sizes=PAGE_SIZES,
                                **({"flash": error} if error else {}))

    async def detail(self, request: Request) -> Response:
        session = await self.con.session(request)
        key_id = request.path_params["key_id"]
        tab = request.query_params.get("tab", "config")
        tab = tab if tab in TABS else "config"
        return await self.render_detail(request, session, key_id, tab)

    async def render_detail(self, request: Request, session: Session, key_id: str, tab: str, status: int = 200,
                            **extra: Any) -> Response:
        data: dict[str, Any] = {}
        try:
            meta = (await self.con.call(request, session, "DescribeKey", {"KeyId": key_id}))["KeyMetadata"]
        except KMSError as e:
            return await self.con.render(request, "error.html", session, status=e.status,
                                    title="Key not available", message=e.message, code=e.code)
        key_id = meta["KeyId"]
        errors: list[dict] = []

        async def get(name: str, op: str, params: dict) -> None:
            try:
                data[name] = await self.con.call(request, session, op, params)
            except KMSError as e:
                errors.append({"code": e.code, "text": e.message, "what": op})

        await get("aliases", "ListAliases", {"KeyId": key_id})
        if tab == "policy":
            await get("policy", "GetKeyPolicy", {"KeyId": key_id, "PolicyName": "default"})
        elif tab == "crypto" and is_asymmetric(meta.get("KeySpec")):
            await get("public_key", "GetPublicKey", {"KeyId": key_id})
        elif tab == "tags":
            await get("tags", "ListResourceTags", {"KeyId": key_id})
        elif tab == "rotation":
            await get("rotation", "GetKeyRotationStatus", {"KeyId": key_id})
            await get("rotations", "ListKeyRotations", {"KeyId": key_id})
        elif tab == "grants":
            await get("grants", "ListGrants", {"KeyId": key_id})
        elif tab == "events":
            try:
                raw = await run_in_threadpool(lambda: self.con.backend.events(limit=50, key=key_id))
                data["events"] = [audit_view.summarize(e) for e in raw]
            except Exception as e:  # the audit log may be off or unreadable: say so, keep the page
                errors.append({"code": type(e).__name__, "text": "The audit log cannot be read.", "what": "audit"})
        if "policy" in data and "policy_text" not in extra:
            extra["policy_text"] = wizard.pretty_policy(data["policy"]["Policy"])
        if "policy_text" in extra:
            extra["policy_view"] = wizard.summarize_policy(extra["policy_text"])
        pk = data.get("public_key")
        if pk:
            der = pk["PublicKey"]
            data["public_key_pem"] = ("-----BEGIN PUBLIC KEY-----\n"
                                      + "\n".join(base64.b64encode(der).decode()[i:i + 64]
                                                  for i in range(0, len(base64.b64encode(der)), 64))
                                      + "\n-----END PUBLIC KEY-----")
        return await self.con.render(
            request, "key.html", session, status=status, nav="aws" if meta.get("KeyManager") == "AWS" else "customer",
            meta=meta, tab=tab, data=data, errors=errors, read_only=meta.get("KeyManager") == "AWS",
            asymmetric=is_asymmetric(meta.get("KeySpec")), grant_operations=GRANT_OPERATIONS, **extra)

    async def action(self, request: Request) -> Response:
        session = await self.con.session(request)
        form = await self.con.form(request, session)
        key_id = request.path_params["key_id"]
        name = str(form.get("action", ""))
        tab = str(form.get("tab", "config"))
        tab = tab if tab in TABS else "config"
        if name == "policy":
            return await self.put_policy(request, session, key_id, form)
        if name == "import-params":
            return await self.import_params(request, session, key_id, form)
        try:
            steps = await self.build_action(name, form, key_id)
            for op, params, _ in steps:
                await self.con.call(request, session, op, params)
            await self.con.flash(session, "success", steps[-1][2] if steps else "Done.")
        except KMSError as e:
            await self.con.flash_error(session, e)
        self.index.invalidate()
        return self.con.redirect(f"/keys/{key_id}?tab={tab}")

    async def build_action(self, name: str, form, key_id: str) -> list[tuple[str, dict, str]]:
        """The engine calls an action form asks for: [(operation, params, success message)]."""
        f = {k: str(v) for k, v in form.multi_items() if isinstance(v, str)}
        k = {"KeyId": key_id}
        if name in _SIMPLE:
            op, msg = _SIMPLE[name]
            return [(op, dict(k), msg)]
        if name == "import-material":
            return [("ImportKeyMaterial", await self.import_material_params(form, key_id), "Key material imported.")]
        if name == "grant-create":
            return [("CreateGrant", self.grant_params(form, key_id), "Grant created.")]
        build = _FORM_ACTIONS.get(name)
        if build is None:
            raise _bad("Unknown action.")
        return [build(f, key_id)]

    @staticmethod
    def grant_params(form, key_id: str) -> dict:
        params: dict[str, Any] = {"KeyId": key_id, "GranteePrincipal": str(form.get("grantee", "")).strip(),
                                  "Operations": [o for o in form.getlist("operations") if isinstance(o, str)]}
        for field, member in (("retiring", "RetiringPrincipal"), ("name", "Name")):
            v = str(form.get(field, "")).strip()
            if v:
                params[member] = v
        ctx = parse_pairs(str(form.get("context", "")), "encryption context constraint")
        if ctx:
            kind = "EncryptionContextSubset" if form.get("context_kind") == "subset" else "EncryptionContextEquals"
            params["Constraints"] = {kind: ctx}
        return params

    @staticmethod
    async def import_material_params(form, key_id: str) -> dict:
        params: dict[str, Any] = {"KeyId": key_id}
        for field, member in (("material", "EncryptedKeyMaterial"), ("token", "ImportToken")):
            upload = form.get(field)
            if upload is None or isinstance(upload, str):
                raise _bad(f"Choose the {_UPLOADS[field]} file.")
            params[member] = await upload.read()
        if form.get("expires") == "yes":
            params["ExpirationModel"] = "KEY_MATERIAL_EXPIRES"
            try:
                params["ValidTo"] = datetime.fromisoformat(str(form.get("valid_to"))).replace(tzinfo=UTC)
            except ValueError:
                raise _bad("Give the expiration date as YYYY-MM-DD.") from None
        else:
            params["ExpirationModel"] = "KEY_MATERIAL_DOES_NOT_EXPIRE"
        return params

    async def put_policy(self, request: Request, session: Session, key_id: str, form) -> Response:
        text = str(form.get("policy", ""))
        problem = wizard.json_problem(text)
        if problem is None:
            try:
                await self.con.call(request, session, "PutKeyPolicy",
                               {"KeyId": key_id, "PolicyName": "default", "Policy": text})
                await self.con.flash(session, "success", "Key policy saved.")
                return self.con.redirect(f"/keys/{key_id}?tab=policy&view=json")
            except KMSError as e:
                problem = {"code": e.code, "text": e.message}
        return await self.render_detail(request, session, key_id, "policy", status=400, policy_text=text,
                                   policy_error=problem, editing=True)

    async def import_params(self, request: Request, session: Session, key_id: str, form) -> Response:
        spec = str(form.get("wrapping_spec", "RSA_4096"))
        alg = str(form.get("wrapping_algorithm", "RSAES_OAEP_SHA_256"))
        try:
            r = await self.con.call(request, session, "GetParametersForImport",
                               {"KeyId": key_id, "WrappingAlgorithm": alg, "WrappingKeySpec": spec})
        except KMSError as e:
            await self.con.flash_error(session, e)
            return self.con.redirect(f"/keys/{key_id}?tab=material")
        params = {"public_key": base64.b64encode(r["PublicKey"]).decode(),
                  "import_token": base64.b64encode(r["ImportToken"]).decode(),
                  "valid_to": r.get("ParametersValidTo"), "algorithm": alg, "spec": spec}
        return await self.render_detail(request, session, key_id, "material", import_params=params)

    async def use(self, request: Request) -> Response:
        """Encrypt / decrypt / generate data key.  The plaintext lives only in this request."""
        session = await self.con.session(request)
        form = await self.con.form(request, session)
        key_id = request.path_params["key_id"]
        op = str(form.get("op", ""))
        result: dict[str, Any] = {"op": op}
        try:
            ctx = parse_pairs(str(form.get("context", "")), "encryption context")
            params: dict[str, Any] = {"KeyId": key_id}
            if ctx:
                params["EncryptionContext"] = ctx
            if op == "encrypt":
                params["Plaintext"] = str(form.get("plaintext", "")).encode()
                r = await self.con.call(request, session, "Encrypt", params)
                result["ciphertext"] = base64.b64encode(r["CiphertextBlob"]).decode()
            elif op == "decrypt":
                try:
                    params["CiphertextBlob"] = base64.b64decode(str(form.get("ciphertext", "")).strip(), validate=True)
                except (binascii.Error, ValueError):
                    raise _bad("The ciphertext is not valid base64.") from None
                r = await self.con.call(request, session, "Decrypt", params)
                pt = r["Plaintext"]
                try:
                    result["plaintext"], result["encoding"] = pt.decode("utf-8"), "UTF-8 text"
                except UnicodeDecodeError:
                    result["plaintext"], result["encoding"] = base64.b64encode(pt).decode(), "base64"
                del pt, r
            elif op == "datakey":
                params["KeySpec"] = "AES_256" if form.get("spec") != "AES_128" else "AES_128"
                r = await self.con.call(request, session, "GenerateDataKeyWithoutPlaintext", params)
                result["ciphertext"] = base64.b64encode(r["CiphertextBlob"]).decode()
            else:
                raise _bad("Choose encrypt, decrypt or generate data key.")
        except KMSError as e:
            result["error"] = {"code": e.code, "text": e.message}
        return await self.render_detail(request, session, key_id, "use", use_result=result,
                                   use_context=str(form.get("context", ""))[:4096])

    def routes(self) -> list[Route]:
        p = "/console"
        return [
            Route(p + "/keys", self.customer_keys, methods=["GET"]),
            Route(p + "/aws-keys", self.aws_keys, methods=["GET"]),
            *wizard.routes(self.con),
            Route(p + "/keys/{key_id:str}", self.detail, methods=["GET"]),
            Route(p + "/keys/{key_id:str}/action", self.action, methods=["POST"]),
            Route(p + "/keys/{key_id:str}/use", self.use, methods=["POST"]),
        ]



_UPLOADS = {"material": "wrapped key material", "token": "import token"}
_SIMPLE = {
    "enable": ("EnableKey", "Key enabled."),
    "disable": ("DisableKey", "Key disabled."),
    "cancel-deletion": ("CancelKeyDeletion", "Key deletion canceled. The key is disabled: enable it to use it."),
    "rotate-now": ("RotateKeyOnDemand", "On-demand rotation started."),
    "disable-rotation": ("DisableKeyRotation", "Automatic key rotation disabled."),
    "delete-material": ("DeleteImportedKeyMaterial", "Imported key material deleted."),
}


def _schedule_deletion(f: dict, key_id: str) -> tuple[str, dict, str]:
    if f.get("confirm") != "yes":
        raise _bad("Confirm that you want to schedule deletion of this key.")
    days = _int(f.get("days"), 30, -(10**6), 10**6)
    return "ScheduleKeyDeletion", {"KeyId": key_id, "PendingWindowInDays": days}, "Key deletion scheduled."


def _alias_add(f: dict, key_id: str) -> tuple[str, dict, str]:
    alias = f.get("alias", "").strip()
    alias = alias if alias.startswith("alias/") else "alias/" + alias
    return "CreateAlias", {"AliasName": alias, "TargetKeyId": key_id}, f"Alias {alias} created."


def _grant_end(op: str) -> Any:
    def build(f: dict, key_id: str) -> tuple[str, dict, str]:
        verb = "retired" if op == "RetireGrant" else "revoked"
        return op, {"KeyId": key_id, "GrantId": f.get("grant_id", "")}, f"Grant {verb}."
    return build


_FORM_ACTIONS: dict[str, Any] = {
    "description": lambda f, k: ("UpdateKeyDescription", {"KeyId": k, "Description": f.get("description", "")},
                                 "Description updated."),
    "schedule-deletion": _schedule_deletion,
    "enable-rotation": lambda f, k: ("EnableKeyRotation", {
        "KeyId": k, "RotationPeriodInDays": _int(f.get("period"), 365, -(10**6), 10**6)},
        "Automatic key rotation enabled."),
    "alias-add": _alias_add,
    "alias-delete": lambda f, k: ("DeleteAlias", {"AliasName": f.get("alias", "")}, "Alias deleted."),
    "tag-add": lambda f, k: ("TagResource", {"KeyId": k, "Tags": [
        {"TagKey": f.get("tag_key", ""), "TagValue": f.get("tag_value", "")}]}, "Tag saved."),
    "tag-remove": lambda f, k: ("UntagResource", {"KeyId": k, "TagKeys": [f.get("tag_key", "")]}, "Tag removed."),
    "grant-retire": _grant_end("RetireGrant"),
    "grant-revoke": _grant_end("RevokeGrant"),
}


def _describe_rows(con, request: Request, session: Session, rows: list[dict]) -> None:
    """DescribeKey for the rows on the page only (what the AWS console does too)."""
    for row in rows:
        try:
            row["meta"] = con.backend.call("DescribeKey", {"KeyId": row["key_id"]},
                                           con.context(request, session))["KeyMetadata"]
        except KMSError as e:
            row["error"] = e.code



def routes(con) -> list[Route]:
    return KeyViews(con).routes()
