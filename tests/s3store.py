"""The S3-compatible store of the suite, as the ``s3_store`` fixture (tests/conftest.py) hands it over."""

from __future__ import annotations

import uuid
from typing import Any


class S3Store:
    """The S3-compatible store of the suite (versitygw from ``scripts/services``) and how to reach it."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, region: str, exchange: str) -> None:
        self.endpoint, self.access_key, self.secret_key = endpoint, access_key, secret_key
        self.region, self.exchange = region, exchange

    @property
    def env(self) -> dict[str, str]:
        """The settings of a function that ``uses: [s3]``."""
        return {
            "S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
        }

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def bucket(self, prefix: str = "b") -> str:
        """A new bucket of a unique name (the store's notifications are server-wide: tests filter by it)."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name
