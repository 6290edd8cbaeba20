"""Secrets kept out of everything longmix writes or prints, by value as well as by name.

Masking by key name alone let `http://KEYID:SECRET@host` (an endpoint URL) and free-form Spark
settings such as `...account.key.<name>...` through. So three rules apply to every text:
the userinfo of any URL, the values of any setting whose name looks like a credential (its
name split into words: key, secret, token, password, credential, sas, signature...), and the
values of credential-looking environment variables (AWS_*, HF_TOKEN and the like) wherever
they appear. The config's values are registered once on the driver (`remember`); `scrub` is
applied to every file and log line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

# A plain word: it stays valid wherever it lands (a YAML scalar, JSON, a Markdown table).
REDACTED = "REDACTED"
# Words of a key that mark its value as a credential. Whole words only: `tokens` (a token
# budget), `tokenizer` and `bfd_window_tokens` are configuration.
SECRET_WORDS = frozenset(
    {
        "key",
        "keys",
        "secret",
        "secrets",
        "token",
        "password",
        "passwd",
        "credential",
        "credentials",
        "sas",
        "signature",
        "apikey",
        "passphrase",
        "authorization",
    }
)
USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s'\"]+)@")
# Query parameters that carry credentials (pre-signed URLs, Azure SAS).
SECRET_QUERY = re.compile(
    r"(?P<name>[?&](?:sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|"
    r"token|access_token|sv|se|sp|skoid|sktid))=(?P<value>[^&\s'\"]+)",
    re.I,
)
# Shorter values would mask ordinary words and numbers all over a report.
MIN_SECRET_LENGTH = 6

_remembered: set[str] = set()


def key_words(key: str) -> list[str]:
    """`fs.azure.account.key.x`, `hf_token`, `secretAccessKey` -> lower-case words."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(key))
    return [w for w in re.split(r"[^a-zA-Z0-9]+", spaced.lower()) if w]


def is_secret_key(key: str) -> bool:
    return any(word in SECRET_WORDS for word in key_words(key))


def environment_secrets() -> set[str]:
    """Values of the environment's credential-looking variables (not paths: a variable
    such as AWS_SHARED_CREDENTIALS_FILE names where a secret is, it is none)."""
    return {
        value
        for name, value in os.environ.items()
        if is_secret_key(name) and len(value) >= MIN_SECRET_LENGTH and not value.startswith("/")
    }


def secrets_in(value: Any) -> set[str]:
    """Every secret value in a nested config: under secret-looking keys, and URL userinfo."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if is_secret_key(key) and isinstance(item, str | int | float) and item is not None:
                found.add(str(item))
            else:
                found |= secrets_in(item)
    elif isinstance(value, list):
        for item in value:
            found |= secrets_in(item)
    elif isinstance(value, str):
        for match in USERINFO.finditer(value):
            found.add(match.group("userinfo"))
            found |= set(match.group("userinfo").split(":"))
    return {s for s in found if len(s) >= MIN_SECRET_LENGTH}


def remember(values: Iterable[str]) -> None:
    """Secret values that `scrub` masks from now on in this process."""
    _remembered.update(v for v in values if len(v) >= MIN_SECRET_LENGTH)


def scrub(text: str) -> str:
    """`text` with every secret this process knows of masked."""
    text = USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)
    text = SECRET_QUERY.sub(lambda m: f"{m.group('name')}={REDACTED}", text)
    for value in sorted(_remembered | environment_secrets(), key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text


def redact(value: Any) -> Any:
    """A nested config with secret keys' values masked and every string scrubbed."""
    if isinstance(value, dict):
        return {
            key: REDACTED if is_secret_key(key) and item is not None else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return scrub(value)
    return value
