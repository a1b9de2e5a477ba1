"""Filters of the web security of Prometheus and Alertmanager (basic auth, TLS)."""

import hashlib

from ansible.errors import AnsibleFilterError

try:
    from passlib.hash import bcrypt as _passlib_bcrypt
except ImportError:  # reported when the filter is used, with what to install
    _passlib_bcrypt = None

# bcrypt's base-64 alphabet; the 22nd salt character only carries 2 bits, so
# it is one of four characters.
_BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_BCRYPT_LAST = ".Oeu"
BCRYPT_ROUNDS = 10
BCRYPT_MAX_BYTES = 72


def bcrypt_salt(seed):
    """A bcrypt salt (22 characters) derived from ``seed``: the same seed gives the same salt."""
    digest = hashlib.sha256(str(seed).encode("utf-8")).digest()
    return "".join(_BCRYPT_ALPHABET[b % 64] for b in digest[:21]) + _BCRYPT_LAST[digest[21] % 4]


def bcrypt_hash(password, seed, rounds=BCRYPT_ROUNDS):
    """bcrypt hash (``$2b$``) of ``password`` with a salt derived from ``seed``.

    Deterministic, so that a rerun writes the same file (idempotence): the seed
    names the service and the host, never the password, so equal passwords on
    two hosts still get different hashes and the salt says nothing about the
    password. The messages never contain the password.
    """
    if _passlib_bcrypt is None:
        raise AnsibleFilterError(
            "aetherlink_bcrypt needs passlib and bcrypt on the controller (requirements.txt: pip install passlib bcrypt)")
    if not isinstance(password, str) or password == "":
        raise AnsibleFilterError("aetherlink_bcrypt: the password is empty or not a string")
    if len(password.encode("utf-8")) > BCRYPT_MAX_BYTES:
        raise AnsibleFilterError("aetherlink_bcrypt: bcrypt only reads the first %d bytes of a password; this one is longer"
                                 % BCRYPT_MAX_BYTES)
    return _passlib_bcrypt.using(salt=bcrypt_salt(seed), rounds=int(rounds), ident="2b").hash(password)


class FilterModule:
    def filters(self):
        return {
            "aetherlink_bcrypt": bcrypt_hash,
        }
