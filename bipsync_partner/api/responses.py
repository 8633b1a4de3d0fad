"""The error answers each kind of endpoint declares in the OpenAPI document."""

from __future__ import annotations

from bipsync_partner.api.schemas import ProblemOut

READ_ERRORS: dict[int, type[ProblemOut]] = {
    400: ProblemOut,
    401: ProblemOut,
    403: ProblemOut,
    404: ProblemOut,
}
WRITE_ERRORS: dict[int, type[ProblemOut]] = {
    **READ_ERRORS,
    409: ProblemOut,
    413: ProblemOut,
    422: ProblemOut,
}
