"""Bearer-key authentication of merchants."""

from __future__ import annotations

from litestar import Request

from switch.api.errors import ApiError
from switch.merchants import Merchant, MerchantDirectory


async def authenticate(request: Request) -> Merchant:
    """Return the merchant whose secret key is in ``Authorization: Bearer``.

    Raises:
        ApiError: 401 when the header is missing, malformed or the key is unknown.
    """
    header = request.headers.get("authorization")
    if not header:
        raise ApiError(
            401,
            "authentication_error",
            "missing_api_key",
            "no API key provided; send 'Authorization: Bearer sk_...'",
        )
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key or len(key) > 200:
        raise ApiError(
            401, "authentication_error", "invalid_authorization_header", "use 'Authorization: Bearer sk_...'"
        )
    directory: MerchantDirectory = request.app.state.merchants
    merchant = await directory.authenticate(key)
    if merchant is None:
        # Never echo the key back: it may be a real key pasted in the wrong place.
        raise ApiError(401, "authentication_error", "invalid_api_key", "the API key provided is not valid")
    return merchant
