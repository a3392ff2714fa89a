"""Redis's users: nobody reaches Redis without a password, and each client may do only its job.

`make up` (secrets.prepare) writes, from ``REDIS_PASSWORD`` and ``REDIS_EXPORTER_PASSWORD``:

- ``redis_acl``, the file Redis reads at every start (``--aclfile``): the ``default`` user off
  (an unauthenticated connection gets ``NOAUTH`` for every command), and one user per client,
  its password stored as ``#<SHA-256>`` (the only form Redis needs; no password in clear on disk
  beyond the secret files). ``assistant`` (the API and the worker; the dev traffic generator
  reads the simulated SMS outbox through it) may run every command but the ``@admin`` and
  ``@dangerous`` ones, on the app's own keys (``assistant:*``, every key the app writes) and
  no pub/sub channel. ``redis_exporter`` has the commands its README lists for a dedicated
  user, without the ones that change anything (``CLIENT KILL|PAUSE|...``, ``SLOWLOG RESET``,
  ``LATENCY RESET``) and without keys, since no key check is configured
  (exporters/redis/redis_exporter.env; a ``REDIS_EXPORTER_CHECK_KEYS`` needs a key pattern
  and the read commands here). ``healthcheck`` may only ``PING`` (the Compose healthcheck and
  the native runtime's probe); its password is derived from the app's (HMAC), so it is
  neither a new secret to manage nor a way back to the app's;
- ``assistant_redis_url``, the app's ``redis://assistant:<password>@redis:6379/0``
  (``ASSISTANT_REDIS_URL_FILE``), never on a command line nor in the environment;
- ``redis_exporter_passwords``, the exporter's ``REDIS_PASSWORD_FILE``: in redis_exporter
  (1.45 and 1.86 alike) a JSON object from the Redis address (``REDIS_ADDR``) to the password;
- ``redis_healthcheck_password``.

The ACL file is written anew at every `make up`, so a changed password takes effect at the
next one (its hash changes, so the stack restarts or its containers are recreated). The
native runtime writes its own copies of the two files that name Redis's address
(``addressed``), with 127.0.0.1 and its port.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

APP_USER = "assistant"
EXPORTER_USER = "redis_exporter"
HEALTHCHECK_USER = "healthcheck"
APP_VARIABLE = "REDIS_PASSWORD"
EXPORTER_VARIABLE = "REDIS_EXPORTER_PASSWORD"
ADDRESS = "redis:6379"  # the Compose service's; the native runtime's is 127.0.0.1:<port>

# the passwords' own secret files, and those derived from them (secrets.prepare), under
# .run/<env>/secrets/
APP_PASSWORD_FILE = "redis_password"
EXPORTER_PASSWORD_FILE = "redis_exporter_password"
ACL_FILE = "redis_acl"
APP_URL_FILE = "assistant_redis_url"
EXPORTER_PASSWORDS_FILE = "redis_exporter_passwords"
HEALTHCHECK_FILE = "redis_healthcheck_password"
ADDRESSED = (APP_URL_FILE, EXPORTER_PASSWORDS_FILE)  # name Redis's address

APP_KEYS = "assistant:*"  # assistant/redis_client.py's PREFIX: every key the app writes
# what each user may do after its password (Redis 7's ACL rules, applied left to right)
RULES = {
    # never usable: no password, no command, no key (rules before `off` cannot turn it on)
    "default": "off resetpass resetkeys resetchannels -@all",
    APP_USER: f"on resetkeys ~{APP_KEYS} resetchannels +@all -@admin -@dangerous",
    # redis_exporter's README's list for a dedicated user, less its keys (SCAN, GET, ...:
    # for key checks, none configured) and the subcommands that change the server
    EXPORTER_USER: (
        "on resetkeys resetchannels -@all +client +ping +info +config|get +cluster|info "
        "+slowlog +latency +memory +select -client|kill -client|pause -client|unpause "
        "-client|no-evict -client|unblock -slowlog|reset -latency|reset"
    ),
    HEALTHCHECK_USER: "on resetkeys resetchannels -@all +ping",
}


def healthcheck_password(app_password: str) -> str:
    """The healthcheck user's password: an HMAC of a label under the app's password."""
    return hmac.new(app_password.encode(), b"redis healthcheck", hashlib.sha256).hexdigest()


def acl_file(passwords: Mapping[str, str], extra: Mapping[str, str] | None = None) -> str:
    """The ACL file: ``passwords`` maps each user of RULES but ``default`` to its password;
    ``extra``, more users and their rules (the tests' administrator)."""
    lines = [f"user default {RULES['default']}"]  # Redis takes no comment in this file
    for user, rules in {**RULES, **(extra or {})}.items():
        if user == "default":
            continue
        digest = hashlib.sha256(passwords[user].encode()).hexdigest()
        lines.append(f"user {user} {rules.replace('on ', f'on #{digest} ', 1)}")
    return "\n".join(lines) + "\n"


def app_url(password: str, address: str = ADDRESS) -> str:
    return f"redis://{APP_USER}:{quote(password, safe='')}@{address}/0"


def exporter_passwords(password: str, address: str = ADDRESS) -> str:
    """redis_exporter's password file: its ``REDIS_ADDR`` to the password, in JSON."""
    return json.dumps({f"redis://{address}": password})


def users(values: Mapping[str, str]) -> dict[str, str]:
    """Each user's password, from the secrets (``REDIS_PASSWORD``, ``REDIS_EXPORTER_PASSWORD``)."""
    app = values[APP_VARIABLE]
    return {
        APP_USER: app,
        EXPORTER_USER: values[EXPORTER_VARIABLE],
        HEALTHCHECK_USER: healthcheck_password(app),
    }


def addressed(values: Mapping[str, str], address: str = ADDRESS) -> dict[str, str]:
    """The files that name Redis's address, for ``address``."""
    return {
        APP_URL_FILE: app_url(values[APP_VARIABLE], address),
        EXPORTER_PASSWORDS_FILE: exporter_passwords(values[EXPORTER_VARIABLE], address),
    }


def files(values: Mapping[str, str], address: str = ADDRESS) -> dict[str, str]:
    """Every file derived from the secrets: file name -> its text."""
    passwords = users(values)
    return {
        ACL_FILE: acl_file(passwords),
        HEALTHCHECK_FILE: passwords[HEALTHCHECK_USER],
        **addressed(values, address),
    }


def read_passwords(secrets_dir: Path) -> dict[str, str]:
    """The two passwords from the secret files `make up` wrote (the native runtime)."""
    return {
        APP_VARIABLE: (secrets_dir / APP_PASSWORD_FILE).read_text().strip(),
        EXPORTER_VARIABLE: (secrets_dir / EXPORTER_PASSWORD_FILE).read_text().strip(),
    }
