"""Where the master password comes from: an argument, the environment, or the OS keyring.

:func:`resolve_password` tries, in order:

1. the ``explicit`` argument, when given;
2. the ``WAIAAS_MASTER_PASSWORD`` environment variable (read by
   :func:`waiaas.config.password_from_env`);
3. the OS keyring (``keyring`` package), only where a working backend exists.

It never prompts. Headless machines usually have no keyring backend (``keyring`` then
selects its ``fail`` backend); ``keyrings.alt``'s ``EncryptedKeyring`` would ask for a
password on the terminal, so it is skipped, and any backend error counts as "unavailable".
When nothing works, :class:`~waiaas.errors.PasswordUnavailableError` says what to do.

Example::

    from waiaas.keystore import Keystore, resolve_password

    ks = Keystore.open("wallet.keystore")
    ks.unlock(resolve_password(None, keyring_user="wallet.keystore"))
"""

from __future__ import annotations

import logging
from typing import Any

from waiaas.config import PASSWORD_ENV, password_from_env
from waiaas.errors import InvalidInputError, PasswordUnavailableError
from waiaas.keystore._crypto import password_bytes

__all__ = ["check_password_strength", "resolve_password"]

_log = logging.getLogger("waiaas.keystore")


def resolve_password(
    explicit: str | None = None, *, keyring_service: str = "waiaas", keyring_user: str
) -> str:
    """Return the master password from the first source that has one; never prompt.

    Args:
        explicit: a password passed by the caller; used as is when not ``None``.
        keyring_service: the OS-keyring service name to look up.
        keyring_user: the OS-keyring user name to look up (e.g. the wallet's name).

    Returns:
        The password (a non-empty str).

    Raises:
        InvalidInputError: ``explicit`` is not a non-empty str, or bad service/user names.
        PasswordUnavailableError: no source had a password; the message lists the three
            ways to provide one and why the keyring was not usable.

    Example::

        password = resolve_password(None, keyring_user="my-wallet")
    """
    for value, field in ((keyring_service, "keyring_service"), (keyring_user, "keyring_user")):
        if not isinstance(value, str) or not value.strip():
            raise InvalidInputError(f"{field} must be a non-empty str", field=field)
    if explicit is not None:
        password_bytes(explicit)  # validates: a non-empty str
        return explicit
    from_env = password_from_env()
    if from_env is not None:
        _log.debug("master password taken from %s", PASSWORD_ENV)
        return from_env
    stored, problem = _from_keyring(keyring_service, keyring_user)
    if stored is not None:
        _log.debug("master password taken from the OS keyring (service %r)", keyring_service)
        return stored
    raise PasswordUnavailableError(
        "no master password available. Provide it in one of three ways: "
        "pass password=... explicitly; "
        f"or set the {PASSWORD_ENV} environment variable; "
        f"or store it in the OS keyring under service {keyring_service!r} and user "
        f"{keyring_user!r} (for example: keyring set {keyring_service} {keyring_user}). "
        f"The OS keyring was not usable: {problem}.",
        keyring_service=keyring_service,
        keyring_user=keyring_user,
        env_var=PASSWORD_ENV,
    )


def _from_keyring(service: str, user: str) -> tuple[str | None, str]:
    """``(password, "")`` from the OS keyring, or ``(None, why not)``. Never raises."""
    try:
        import keyring
    except ImportError:
        return None, "the keyring package is not installed"
    try:
        active = keyring.get_keyring()
    except Exception as exc:  # a broken keyring configuration is just "unavailable"
        return None, f"no keyring backend could be loaded ({type(exc).__name__})"
    backends = _usable_backends(active)
    if not backends:
        return None, f"no usable backend (active backend: {_backend_name(active)})"
    failures: list[str] = []
    for backend in backends:
        try:
            value = backend.get_password(service, user)
        except Exception as exc:  # NoKeyringError, locked keychain, D-Bus errors, ...
            failures.append(f"{_backend_name(backend)} failed ({type(exc).__name__})")
            continue
        if isinstance(value, str) and value:
            return value, ""
    if failures:
        return None, "; ".join(failures)
    names = ", ".join(_backend_name(b) for b in backends)
    return None, f"no password is stored there for this service and user (backend: {names})"


def _usable_backends(active: Any) -> list[Any]:
    """The backends that can be asked without prompting: the chain expanded, duds dropped."""
    try:
        from keyring.backends.chainer import ChainerBackend

        members = list(active.backends) if isinstance(active, ChainerBackend) else [active]
    except Exception:
        members = [active]
    return [backend for backend in members if not _is_unusable(backend)]


def _is_unusable(backend: Any) -> bool:
    cls = type(backend)
    module = cls.__module__ or ""
    if module in ("keyring.backends.fail", "keyring.backends.null"):
        return True
    # keyrings.alt's encrypted file backends prompt for their own password on the terminal.
    return module.startswith("keyrings.alt") and any(
        "Encrypted" in base.__name__ for base in cls.__mro__
    )


def _backend_name(backend: Any) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


# Keyboard and alphabet runs: a password that is a piece of one of these is refused.
_RUNS = (
    "0123456789012345678901234567890123456789",
    "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz",
    "qwertyuiopasdfghjklzxcvbnmqwertyuiopasdfghjklzxcvbnm",
    "azertyuiopqsdfghjklmwxcvbnazertyuiopqsdfghjklmwxcvbn",
)
_MIN_DISTINCT = 5


def check_password_strength(password: str, min_length: int, *, field: str = "password") -> None:
    """Refuse a master password that is too weak for a *new* keystore (or a new password).

    With ``min_length`` > 0 (``WalletConfig.min_password_length``, 12 by default) the
    password must have at least ``min_length`` characters, at least 5 different ones, and
    must not be a run of the alphabet, the digits or a keyboard row (forwards or backwards).
    ``min_length=0`` turns the check off (tests only). The message never echoes the password.

    Raises:
        InvalidInputError: the password is too weak (``field`` names the argument).

    Example::

        check_password_strength("correct horse battery staple", 12)   # fine
    """
    if not isinstance(password, str) or not password:
        raise InvalidInputError(f"{field} must be a non-empty string", field=field)
    if min_length <= 0:
        return
    if len(password) < min_length:
        raise InvalidInputError(
            f"{field} is too short: use at least {min_length} characters "
            "(a few random words work well)",
            field=field,
        )
    if len(set(password)) < _MIN_DISTINCT:
        raise InvalidInputError(
            f"{field} repeats too few characters: use at least {_MIN_DISTINCT} different ones",
            field=field,
        )
    folded = password.casefold()
    if any(folded in run or folded in run[::-1] for run in _RUNS):
        raise InvalidInputError(
            f"{field} is a run of the alphabet, digits or a keyboard row", field=field
        )
