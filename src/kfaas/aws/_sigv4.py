"""AWS Signature Version 4, verified: the request's signature recomputed with botocore's own signer.

The signer that boto3 signs with (``botocore.auth.SigV4Auth``) computes the canonical request, the string to
sign and the signature from the parts of the request that the client signed (the headers its
``SignedHeaders`` names, the path, the query and the body's SHA-256) and the secret key configured for the
access key it names; the two signatures are compared in constant time. Only the ``Authorization`` header
form is taken (what the SDKs send for these APIs); a presigned query string is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["ALGORITHM", "AuthError", "Credentials", "Signed", "verify"]

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = timedelta(minutes=15)  # AWS refuses a request signed more than 15 minutes from its clock

_FIELD = re.compile(r"(\w+)=([^,\s]*)")


class AuthError(Exception):
    """A request that is not signed as it must be: ``kind`` says which AWS error it is.

    Kinds: ``missing`` (no signature at all), ``incomplete`` (a malformed Authorization header), ``unknown-key``
    (an access key that is not configured), ``mismatch`` (the signature is wrong), ``expired`` (signed too
    long ago or ahead), ``scope`` (signed for another service).
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class Credentials:
    """The access keys requests may be signed with: access key id -> secret access key."""

    keys: Mapping[str, str]

    def secret(self, access_key: str) -> str | None:
        return self.keys.get(access_key)


@dataclass(frozen=True)
class Signed:
    """What a verified signature tells: who signed, for which region and service."""

    access_key: str
    region: str
    service: str


def _parse(authorization: str) -> tuple[str, str, str, str, list[str], str]:
    algorithm, _, rest = authorization.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise AuthError("incomplete", f"Unsupported AWS 'algorithm': '{algorithm}'; only {ALGORITHM} is")
    fields = dict(_FIELD.findall(rest))
    missing = [k for k in ("Credential", "SignedHeaders", "Signature") if not fields.get(k)]
    if missing:
        raise AuthError(
            "incomplete",
            f"Authorization header requires {', '.join(repr(k) for k in missing)} parameter(s). "
            f"Authorization={authorization[:200]}",
        )
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise AuthError(
            "incomplete",
            f"Credential should be <access key>/<date>/<region>/<service>/aws4_request, "
            f"not {fields['Credential']!r}",
        )
    access_key, date, region, service, _ = scope
    return access_key, date, region, service, fields["SignedHeaders"].split(";"), fields["Signature"]


def verify(
    credentials: Credentials,
    method: str,
    *,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    service: str,
    now: datetime | None = None,
) -> Signed:
    """Check the SigV4 signature of one request signed for ``service``; raises :class:`AuthError` if wrong.

    ``headers`` has lower-case names; ``path`` is the raw path and ``query`` the raw query string as sent.
    """
    authorization = headers.get("authorization")
    if not authorization:
        if "x-amz-signature" in query.lower() or "x-amz-credential" in query.lower():
            raise AuthError(
                "incomplete", "presigned query strings are not accepted: sign the request's headers"
            )
        raise AuthError("missing", "Missing Authentication Token")
    access_key, date, region, signed_service, signed_headers, signature = _parse(authorization)
    secret = credentials.secret(access_key)
    if secret is None:
        raise AuthError("unknown-key", "The security token included in the request is invalid.")
    if signed_service != service:
        raise AuthError("scope", f"Credential should be scoped to correct service: '{service}'.")
    if "host" not in signed_headers:
        raise AuthError("incomplete", "the Host header must be among the SignedHeaders")
    stamp = headers.get("x-amz-date", "")
    try:
        when = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise AuthError(
            "incomplete", f"the X-Amz-Date header must be a timestamp like 20260102T030405Z, not {stamp!r}"
        ) from None
    if date != stamp[:8]:
        raise AuthError(
            "scope",
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{date}' != '{stamp[:8]}'",
        )
    now = now or datetime.now(UTC)
    if when < now - MAX_SKEW:
        raise AuthError(
            "expired",
            f"Signature expired: {stamp} is now earlier than {(now - MAX_SKEW):%Y%m%dT%H%M%SZ} "
            f"({now:%Y%m%dT%H%M%SZ} - 15 min.)",
        )
    if when > now + MAX_SKEW:
        raise AuthError(
            "expired",
            f"Signature not yet current: {stamp} is still later than {(now + MAX_SKEW):%Y%m%dT%H%M%SZ} "
            f"({now:%Y%m%dT%H%M%SZ} + 15 min.)",
        )
    digest = hashlib.sha256(body).hexdigest()
    declared = headers.get("x-amz-content-sha256")
    if declared is not None and declared != digest:
        raise AuthError(
            "mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed."
        )
    expected = _signature(
        secret,
        access_key=access_key,
        region=region,
        service=service,
        method=method,
        path=path,
        query=query,
        headers=headers,
        signed_headers=signed_headers,
        body=body,
        stamp=stamp,
    )
    if not hmac.compare_digest(expected, signature):
        raise AuthError(
            "mismatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        )
    return Signed(access_key, region, service)


def _signature(
    secret: str,
    *,
    access_key: str,
    region: str,
    service: str,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    signed_headers: list[str],
    body: bytes,
    stamp: str,
) -> str:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials as BotoCredentials

    host = headers.get("host", "")
    url = f"http://{host}{path}" + (f"?{query}" if query else "")
    # only what the client signed takes part, exactly as it arrived
    signed = {name: headers.get(name, "") for name in signed_headers}
    request = AWSRequest(method=method, url=url, data=body, headers=signed)
    request.context["timestamp"] = stamp
    signer = SigV4Auth(BotoCredentials(access_key, secret), service, region)
    canonical = signer.canonical_request(request)
    return str(signer.signature(signer.string_to_sign(request, canonical), request))
