"""LanceDB storage options for an object-store URI, read from the standard AWS environment variables.

Only the endpoint, region and plain-HTTP switch are passed on; credentials (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, or an instance role) are left for LanceDB's own
credential chain to read from the environment, so they never pass through this code or its settings.
"""

import os
from collections.abc import Mapping

S3_SCHEMES = ("s3://", "s3+ddb://")


def storage_options(uri: str, environ: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """Options for ``lancedb.connect(uri, storage_options=...)``; None for a local folder."""
    if not uri.startswith(S3_SCHEMES):
        return None
    environ = os.environ if environ is None else environ
    options: dict[str, str] = {}
    endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["aws_endpoint"] = endpoint
        if endpoint.startswith("http://"):  # an S3-compatible server without TLS (MinIO, moto on loopback)
            options["allow_http"] = "true"
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    if region:
        options["aws_region"] = region
    return options
