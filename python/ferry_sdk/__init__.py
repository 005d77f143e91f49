"""ferry-sdk: the Python SDK of ferry, research data transfer between
endpoints through a hub.

>>> from ferry_sdk import FerryClient
>>> client = FerryClient("https://hub.example.org", token, ca_file="ca.crt")
>>> task_id = client.transfer("laptop", "cluster", [("/~/data", "/~/in", True)])
>>> client.wait_task(task_id)["status"]
'SUCCEEDED'
"""

from .auth import (
    CLI_CLIENT_ID,
    SCOPE_SETUP,
    SCOPE_TRANSFER,
    AccessTokenAuthorizer,
    Authorizer,
    ClientCredentialsAuthorizer,
    ConfidentialAppAuthClient,
    NativeAppAuthClient,
    PKCEFlow,
    RefreshTokenAuthorizer,
    Tokens,
)
from .client import CHECKSUM_ALGORITHMS, SYNC_LEVELS, FerryClient, TransferItem, exclude, include
from .errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    FerryAPIError,
    FerryError,
    LoginError,
    NotFoundError,
    OAuthError,
    OperationFailedError,
    PermissionDeniedError,
    RateLimitedError,
    TaskWaitTimeout,
    TransportError,
    UnavailableError,
)
from .paths import decode_path, decode_path_bytes, encode_path

__version__ = "0.1.0"

__all__ = [
    "CLI_CLIENT_ID",
    "SCOPE_SETUP",
    "SCOPE_TRANSFER",
    "AccessTokenAuthorizer",
    "Authorizer",
    "ClientCredentialsAuthorizer",
    "ConfidentialAppAuthClient",
    "NativeAppAuthClient",
    "PKCEFlow",
    "RefreshTokenAuthorizer",
    "Tokens",
    "CHECKSUM_ALGORITHMS",
    "SYNC_LEVELS",
    "FerryClient",
    "TransferItem",
    "include",
    "exclude",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "FerryAPIError",
    "FerryError",
    "LoginError",
    "NotFoundError",
    "OAuthError",
    "OperationFailedError",
    "PermissionDeniedError",
    "RateLimitedError",
    "TaskWaitTimeout",
    "TransportError",
    "UnavailableError",
    "decode_path",
    "decode_path_bytes",
    "encode_path",
]
