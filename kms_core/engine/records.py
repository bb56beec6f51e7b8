"""What the engine knows about one key, and the constants its handlers share."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kms_core.keytypes import Encrypter, KeyType, Material

DAY = 86400.0
ENABLED, DISABLED, PENDING_DELETION, PENDING_IMPORT = "Enabled", "Disabled", "PendingDeletion", "PendingImport"
PENDING_REPLICA_DELETION, CREATING = "PendingReplicaDeletion", "Creating"
SYMMETRIC = "SYMMETRIC_DEFAULT"
MAX_ON_DEMAND_ROTATIONS = 25
MAX_ALIASES_PER_KEY = 50
MAX_TAGS = 50
MAX_GRANTS_PER_KEY = 50000
DEFAULT_ROTATION_DAYS = 365

# Request parameters in boto3's Python form (validated against the operation table first).
Params = dict[str, Any]
Result = dict[str, Any]

# Predefined AWS-managed aliases (alias/aws/<service>) and the description AWS gives their keys.
MANAGED_SERVICES = {
    "s3": "S3 objects", "elasticfilesystem": "Elastic File System data", "rds": "RDS database data",
    "dynamodb": "DynamoDB data", "lambda": "Lambda functions", "ebs": "EBS volumes",
    "secretsmanager": "Secrets Manager secrets", "ssm": "SSM parameters", "acm": "ACM private keys",
    "redshift": "Redshift data", "es": "Elasticsearch data", "glue": "Glue data",
    "kinesis": "Kinesis data", "sns": "SNS data", "sqs": "SQS messages", "backup": "Backup data",
    "codecommit": "CodeCommit repositories", "xray": "X-Ray traces", "logs": "CloudWatch Logs",
}


@dataclass
class RequestContext:
    """Who is calling, from where; ``None`` fields take the engine's defaults."""
    region: str | None = None
    account_id: str | None = None
    principal: str | None = None          # e.g. arn:aws:iam::111122223333:user/alice
    source_ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    access_key_id: str | None = None
    via_service: str | None = None        # e.g. s3.us-east-1.amazonaws.com: the caller acts for that service
    authenticated: bool = True
    source_identity: str | None = None    # who is behind the call, e.g. the OS user running the kms CLI


DEFAULT_CTX = RequestContext()


def ts(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


class KeyRecord:
    """A cached snapshot of one key and its unsealed material versions (memory only)."""
    __slots__ = ("account_id", "arn", "creation_date", "current_version", "deletion_date", "description",
                 "encrypter", "expiration_model", "key_id", "key_manager", "key_spec", "key_state",
                 "key_type", "key_usage", "managed_alias", "material_ids", "materials", "next_event",
                 "next_rotation_date", "on_demand_rotations", "origin", "pending_window_days", "policy",
                 "primary_region", "region", "regions", "rotation_enabled", "rotation_period_days",
                 "row_id", "valid_to")

    key_id: str                       # the key id callers see (``mrk-…`` for multi-Region keys)
    row_id: str                       # this Region's row: the key id, or ``mrk-…/<region>``
    primary_region: str | None        # multi-Region keys: the primary's Region; else None
    regions: tuple[str, ...]          # multi-Region keys: every Region holding the key
    arn: str
    account_id: str
    region: str
    description: str
    creation_date: float
    key_state: str
    key_manager: str
    origin: str
    key_spec: str
    key_usage: str
    deletion_date: float | None
    pending_window_days: int | None
    rotation_enabled: bool
    rotation_period_days: int | None
    next_rotation_date: float | None
    on_demand_rotations: int
    current_version: int
    policy: str
    managed_alias: str | None
    valid_to: float | None
    expiration_model: str | None
    key_type: KeyType
    encrypter: Encrypter | None       # the key type's primitive, looked up once per load
    materials: dict[int, Material]    # material version -> material
    material_ids: dict[int, str]      # material version -> KeyMaterialId
    next_event: float                 # earliest time a deletion, rotation or expiry is due

    @property
    def multi_region(self) -> bool:
        return self.primary_region is not None

    @property
    def is_replica(self) -> bool:
        return self.primary_region is not None and self.primary_region != self.region

    def __repr__(self) -> str:
        return f"<KeyRecord {self.row_id} {self.key_state}>"


__all__ = ["CREATING", "DAY", "DEFAULT_CTX", "DEFAULT_ROTATION_DAYS", "DISABLED", "ENABLED", "MANAGED_SERVICES",
           "MAX_ALIASES_PER_KEY", "MAX_GRANTS_PER_KEY", "MAX_ON_DEMAND_ROTATIONS", "MAX_TAGS",
           "PENDING_DELETION", "PENDING_IMPORT", "PENDING_REPLICA_DELETION", "SYMMETRIC", "KeyRecord", "Params",
           "RequestContext", "Result", "ts"]
