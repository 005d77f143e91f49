"""One HTTPS connection pool to a hub: its base URL, the CA it trusts, the
timeouts, and turning ``requests`` failures into :class:`TransportError`."""

from __future__ import annotations

import os
from typing import Any, Optional, Union
from urllib.parse import urljoin, urlsplit

import requests

from .errors import TransportError

#: Seconds to wait for a connection and between bytes of an answer.
DEFAULT_TIMEOUT = 60.0
#: Largest answer read, in bytes: a task with the most items the hub
#: allows, every path as long as it may be, fits.
MAX_ANSWER = 128 * 1024 * 1024

CAFile = Union[str, "os.PathLike[str]", None]


def normalize_hub_url(url: str) -> str:
    """``https://host[:port][/prefix]`` without a trailing slash."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"hub URL {url!r} must be https://HOST[:PORT]")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(f"hub URL {url!r} must not carry credentials, a query or a fragment")
    return url.rstrip("/")


class Transport:
    """Requests to one hub. ``ca_file`` is a PEM file of the CA to trust
    (the hub's ``ca.crt``) instead of the system's."""

    def __init__(
        self,
        hub_url: str,
        *,
        ca_file: CAFile = None,
        timeout: float = DEFAULT_TIMEOUT,
        session: Optional[requests.Session] = None,
    ) -> None:
        self.base_url = normalize_hub_url(hub_url)
        self.timeout = timeout
        self.session = session or requests.Session()
        # Passed with each request: a session's own `verify` loses to
        # REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE in requests, and the hub's
        # CA must win over the system's bundle.
        self.verify: Union[str, bool] = True
        if ca_file is not None:
            path = os.fspath(ca_file)
            if not os.path.isfile(path):
                raise ValueError(f"CA file {path!r} does not exist; give the hub's ca.crt")
            self.verify = path
        self.session.headers.setdefault("User-Agent", "ferry-sdk-python/0.1")
        parts = urlsplit(self.base_url)
        self._origin = (parts.scheme, parts.hostname, parts.port or 443)

    def url(self, path: str) -> str:
        """``path`` (``/api/v1/...``) or an absolute URL on this hub."""
        if path.startswith("/"):
            return self.base_url + path
        return urljoin(self.base_url + "/", path)

    def same_origin(self, url: str) -> bool:
        """Whether ``url`` is on this hub: credentials go nowhere else."""
        parts = urlsplit(url)
        return (parts.scheme, parts.hostname, parts.port or 443) == self._origin

    def request(self, method: str, url: str, *, timeout: Optional[float] = None, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("allow_redirects", False)
        kwargs.setdefault("verify", self.verify)
        try:
            response = self.session.request(
                method, url, timeout=timeout or self.timeout, stream=True, **kwargs
            )
            with response:
                body = bytearray()
                for chunk in response.iter_content(chunk_size=64 * 1024):
                    body += chunk
                    if len(body) > MAX_ANSWER:
                        raise TransportError(
                            f"the answer to {method} {url} is larger than {MAX_ANSWER} bytes; refusing it"
                        )
            # What requests itself keeps once it has read a body.
            response._content = bytes(body)
            return response
        except requests.exceptions.SSLError as e:
            raise TransportError(
                f"cannot verify the hub at {self.base_url}: {e}; pass ca_file= the hub's ca.crt",
                e,
            ) from e
        except requests.exceptions.Timeout as e:
            raise TransportError(f"the hub at {self.base_url} did not answer in time: {e}", e) from e
        except requests.exceptions.RequestException as e:
            raise TransportError(f"cannot reach the hub at {self.base_url}: {e}", e) from e
