"""The create-key wizard: (1) configure, (2) administrators, (3) users, (4) review the policy.

The steps carry what was chosen so far in a hidden JSON field (nothing in it is
secret), so the wizard keeps no server-side state and survives a reload.  The
policy is ``kms_core.policy.console_policy``, the one the AWS console writes.
"""
from __future__ import annotations

import json
import re
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kms_core.errors import KMSError
from kms_core.policy import console_policy

KEY_SPECS = {
    "Symmetric": [("SYMMETRIC_DEFAULT", "Symmetric (AES-256-GCM)")],
    "HMAC": [(s, s) for s in ("HMAC_224", "HMAC_256", "HMAC_384", "HMAC_512")],
    "Asymmetric": [(s, s) for s in ("RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384",
                                    "ECC_NIST_P521", "ECC_SECG_P256K1", "ML_DSA_44", "ML_DSA_65", "ML_DSA_87")],
}
KEY_USAGES = [("ENCRYPT_DECRYPT", "Encrypt and decrypt"), ("SIGN_VERIFY", "Sign and verify"),
              ("GENERATE_VERIFY_MAC", "Generate and verify MAC"), ("KEY_AGREEMENT", "Key agreement")]
_DELETE_ACTIONS = {"kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion"}
_ARN = re.compile(r"^arn:aws[a-z-]*:(iam|sts)::\d{12}:\S+$|^\d{12}$")
TAG_ROWS = 3
_FIELDS = ("key_spec", "key_usage", "alias", "description", "origin", "multi_region", "admin_delete",
           "account_access")


def json_problem(text: str) -> dict | None:
    """A JSON syntax error with its line and column, or None."""
    try:
        json.loads(text)
    except ValueError as e:
        where = f" (line {e.lineno}, column {e.colno})" if isinstance(e, json.JSONDecodeError) else ""
        return {"code": "MalformedPolicyDocumentException", "text": f"The policy is not valid JSON{where}: "
                f"{e.msg if isinstance(e, json.JSONDecodeError) else e}."}
    return None


def pretty_policy(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2)
    except ValueError:
        return text


def summarize_policy(text: str) -> dict:
    """The "default view": who administers and who uses the key, from the console's statement ids."""
    try:
        doc = json.loads(text)
    except ValueError:
        return {"parsed": False}
    out: dict[str, Any] = {"parsed": True, "account": False, "admins": [], "users": [], "other": 0}
    statements = doc.get("Statement", []) if isinstance(doc, dict) else []
    for st in statements if isinstance(statements, list) else []:
        if not isinstance(st, dict):
            continue
        principal = st.get("Principal", {})
        arns = principal.get("AWS", []) if isinstance(principal, dict) else principal
        arns = [arns] if isinstance(arns, str) else list(arns or [])
        sid = st.get("Sid", "")
        if sid == "Enable IAM User Permissions":
            out["account"] = True
        elif sid == "Allow access for Key Administrators":
            out["admins"] = arns
        elif sid == "Allow use of the key":
            out["users"] = arns
        elif sid != "Allow attachment of persistent resources":
            out["other"] += 1
    return out


def build_policy(account_id: str, state: dict) -> str:
    text = console_policy(account_id, administrators=state.get("admins", []), users=state.get("users", []),
                          allow_account=state.get("account_access", "yes") == "yes",
                          imported=state.get("origin") == "EXTERNAL")
    if state.get("admin_delete", "yes") == "yes":
        return text
    doc = json.loads(text)
    for st in doc["Statement"]:
        if st.get("Sid") == "Allow access for Key Administrators":
            st["Action"] = [a for a in st["Action"] if a not in _DELETE_ACTIONS]
    return json.dumps(doc, indent=2)


def _principals(form, field: str) -> tuple[list[str], list[str]]:
    chosen = [v for v in form.getlist(field) if isinstance(v, str) and v]
    bad = []
    for line in str(form.get(field + "_other", "")).split():
        if _ARN.match(line):
            chosen.append(line)
        else:
            bad.append(line)
    return list(dict.fromkeys(chosen)), bad


def take_step(step: int, form, state: dict) -> list[str]:
    """Copy what step ``step``'s form showed into ``state``; the problems found."""
    errors: list[str] = []
    if step == 1:
        for f in _FIELDS[:5]:
            state[f] = str(form.get(f, "")).strip()
        state["multi_region"] = "yes" if form.get("multi_region") == "yes" else "no"
        tags = []
        for i in range(TAG_ROWS):
            k, v = str(form.get(f"tag_key_{i}", "")).strip(), str(form.get(f"tag_value_{i}", "")).strip()
            if k:
                tags.append({"TagKey": k, "TagValue": v})
        state["tags"] = tags
        alias = state["alias"]
        if alias and not re.fullmatch(r"(alias/)?[a-zA-Z0-9/_-]{1,250}", alias):
            errors.append("An alias may contain only letters, digits, / _ and -.")
        if alias.startswith(("aws/", "alias/aws/")):
            errors.append("Aliases beginning with alias/aws/ are reserved for AWS managed keys.")
    elif step in (2, 3):
        field = "admins" if step == 2 else "users"
        state[field], bad = _principals(form, field)
        if step == 2:
            state["admin_delete"] = "yes" if form.get("admin_delete") == "yes" else "no"
            state["account_access"] = "yes" if form.get("account_access") == "yes" else "no"
        errors += [f"{b!r} is not an IAM ARN or account id." for b in bad]
    elif step == 4:
        state["policy"] = str(form.get("policy", ""))
    return errors


class Wizard:
    def __init__(self, con):
        self.con = con

    async def start(self, request: Request) -> Response:
        session = await self.con.session(request)
        return await self.show(request, session, 1, {"key_spec": "SYMMETRIC_DEFAULT", "key_usage": "ENCRYPT_DECRYPT",
                                                     "origin": "AWS_KMS", "admin_delete": "yes",
                                                     "account_access": "yes"})

    async def show(self, request: Request, session, step: int, state: dict, status: int = 200, **extra) -> Response:
        con = self.con
        users = await run_in_threadpool(con.backend.user_arns) if step in (2, 3) else []
        if step == 4 and "policy" not in state:
            state["policy"] = build_policy(con.backend.account_id, state)
        return await con.render(request, "create.html", session, status=status, nav="customer", step=step,
                                state=state, state_json=json.dumps(state), key_specs=KEY_SPECS,
                                key_usages=KEY_USAGES, known_users=users, tag_rows=TAG_ROWS, **extra)

    async def post(self, request: Request) -> Response:
        session = await self.con.session(request)
        form = await self.con.form(request, session)
        try:
            state = json.loads(str(form.get("state", "{}")))
            if not isinstance(state, dict):
                raise ValueError
        except ValueError:
            state = {}
        raw_step = str(form.get("step", "1"))
        step = min(4, max(1, int(raw_step))) if raw_step.isdigit() else 1
        errors = take_step(step, form, state)
        if form.get("go") == "back":
            if step == 4:
                state.pop("policy", None)  # regenerate it from the choices
            return await self.show(request, session, max(1, step - 1), state)
        if errors:
            return await self.show(request, session, step, state, status=400, step_errors=errors)
        if step < 4:
            if step == 3:
                state.pop("policy", None)
            return await self.show(request, session, step + 1, state)
        return await self.finish(request, session, state)

    async def finish(self, request: Request, session, state: dict) -> Response:
        con = self.con
        text = state.get("policy", "")
        problem = json_problem(text)
        if problem is not None:
            return await self.show(request, session, 4, state, status=400, policy_error=problem)
        params: dict[str, Any] = {"KeySpec": state.get("key_spec") or "SYMMETRIC_DEFAULT",
                                  "KeyUsage": state.get("key_usage") or "ENCRYPT_DECRYPT",
                                  "Origin": state.get("origin") or "AWS_KMS", "Policy": text}
        if state.get("description"):
            params["Description"] = state["description"]
        if state.get("tags"):
            params["Tags"] = state["tags"]
        if state.get("multi_region") == "yes":
            params["MultiRegion"] = True
        try:
            meta = (await con.call(request, session, "CreateKey", params))["KeyMetadata"]
        except KMSError as e:
            return await self.show(request, session, 4, state, status=400,
                                   policy_error={"code": e.code, "text": e.message})
        con.key_index.invalidate()
        key_id = meta["KeyId"]
        alias = state.get("alias", "")
        message = f"Your KMS key was created with key ID {key_id}."
        if alias:
            alias = alias if alias.startswith("alias/") else "alias/" + alias
            try:
                await con.call(request, session, "CreateAlias", {"AliasName": alias, "TargetKeyId": key_id})
                message = f"Your KMS key was created with alias {alias} and key ID {key_id}."
            except KMSError as e:
                await con.flash(session, "error", f"The key {key_id} was created, but its alias was not: "
                                f"{e.message}", e.code)
                return con.redirect(f"/keys/{key_id}")
        await con.flash(session, "success", message)
        return con.redirect(f"/keys/{key_id}?tab={'material' if params['Origin'] == 'EXTERNAL' else 'config'}")


def routes(con) -> list[Route]:
    w = Wizard(con)
    return [Route("/console/create", w.start, methods=["GET"]), Route("/console/create", w.post, methods=["POST"])]
