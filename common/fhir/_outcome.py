"""What a FHIR server's (or its token endpoint's) error answer says, readable and redacted.

An OperationOutcome's ``issue[].diagnostics`` / ``details.text``; a gateway's ``text/plain``
body ("Gateway Timeout"): its first line. Runs of 8+ digits (a NIK, a phone number the server
echoed) and the given secrets are masked, so the text may go into row outcomes and logs.
"""

from __future__ import annotations

import orjson

from common.privacy import mask_digit_runs, mask_secrets

#: The most of a ``text/plain`` error body quoted in a reason.
PLAIN_TEXT_CHARS = 200


def response_text(content: bytes, content_type: str | None, secrets: tuple[str, ...] = ()) -> str:
    """The OperationOutcome's text, or the first line of a ``text/plain`` body (at most
    ``PLAIN_TEXT_CHARS``); "" for anything else (HTML pages, other JSON)."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media == "text/plain":
        lines = [line.strip() for line in content.decode(errors="replace").splitlines()]
        first = next((line for line in lines if line), "")
        return mask_digit_runs(mask_secrets(first[:PLAIN_TEXT_CHARS], secrets))
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return ""
    return outcome_text(body, secrets=secrets)


def outcome_text(body: object, *, secrets: tuple[str, ...] = ()) -> str:
    """The redacted text of an OperationOutcome; "" for anything else."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return ""
    texts: list[str] = []
    for issue in body.get("issue") or ():
        if not isinstance(issue, dict):
            continue
        details = issue.get("details")
        for text in (
            issue.get("diagnostics"),
            details.get("text") if isinstance(details, dict) else None,
        ):
            if isinstance(text, str) and text.strip() and text.strip() not in texts:
                texts.append(text.strip())
    return mask_digit_runs(mask_secrets("; ".join(texts), secrets))
