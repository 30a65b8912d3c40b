"""Master password sources: argument, environment, OS keyring; never a prompt."""

from __future__ import annotations

import getpass
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from keyring.backends import fail, null
from keyring.backends.chainer import ChainerBackend

from waiaas.config import PASSWORD_ENV
from waiaas.errors import InvalidInputError, PasswordUnavailableError
from waiaas.keystore import resolve_password


@pytest.fixture(autouse=True)
def no_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything tries to read a password from the terminal."""

    def refuse(*args: Any, **kwargs: Any) -> str:
        raise AssertionError("resolve_password must never prompt")

    monkeypatch.setattr(getpass, "getpass", refuse)
    monkeypatch.setattr("builtins.input", refuse)


def test_explicit_wins(memory_keyring: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit password is used even when the env and the keyring have one."""
    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    memory_keyring.set_password("waiaas", "wallet", "from-keyring")
    assert resolve_password("explicit", keyring_user="wallet") == "explicit"


def test_env_before_keyring(memory_keyring: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an argument, WAIAAS_MASTER_PASSWORD comes before the keyring."""
    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    memory_keyring.set_password("waiaas", "wallet", "from-keyring")
    assert resolve_password(None, keyring_user="wallet") == "from-env"


def test_keyring_used_when_available(memory_keyring: Any) -> None:
    """With no argument and no env, a working keyring supplies the password."""
    memory_keyring.set_password("waiaas", "wallet", "from-keyring")
    memory_keyring.set_password("custom", "other", "custom-one")
    assert resolve_password(keyring_user="wallet") == "from-keyring"
    assert resolve_password(keyring_service="custom", keyring_user="other") == "custom-one"


def test_empty_env_is_unset(memory_keyring: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty WAIAAS_MASTER_PASSWORD counts as unset."""
    monkeypatch.setenv(PASSWORD_ENV, "")
    memory_keyring.set_password("waiaas", "wallet", "from-keyring")
    assert resolve_password(keyring_user="wallet") == "from-keyring"


def test_nothing_stored_says_what_to_do(memory_keyring: Any) -> None:
    """A keyring without the entry: the error names all three ways to provide a password."""
    with pytest.raises(PasswordUnavailableError) as err:
        resolve_password(keyring_service="svc", keyring_user="my-wallet")
    message = err.value.message
    assert "password=" in message
    assert PASSWORD_ENV in message
    assert "'svc'" in message and "'my-wallet'" in message
    assert "keyring set svc my-wallet" in message
    assert "no password is stored" in message
    assert err.value.code == "PASSWORD_UNAVAILABLE"
    assert err.value.keyring_user == "my-wallet"


@pytest.mark.parametrize("backend", [fail.Keyring(), null.Keyring()])  # type: ignore[no-untyped-call]
def test_headless_backends_are_unavailable(
    keyring_backend: Callable[[Any], None], backend: Any
) -> None:
    """keyring's fail and null backends (headless machines) mean 'unavailable'."""
    keyring_backend(backend)
    with pytest.raises(PasswordUnavailableError, match="no usable backend"):
        resolve_password(keyring_user="wallet")


def test_encrypted_keyring_never_prompts(
    keyring_backend: Callable[[Any], None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """keyrings.alt's EncryptedKeyring (which would prompt) is skipped, even with a file."""
    from keyrings.alt.file import EncryptedKeyring

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    keyring_backend(EncryptedKeyring())
    with pytest.raises(PasswordUnavailableError, match="no usable backend"):
        resolve_password(keyring_user="wallet")


def test_auto_selected_chainer_never_prompts(
    keyring_backend: Callable[[Any], None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chain keyring auto-selects with keyrings.alt installed is used without prompting."""
    from keyrings.alt.file import PlaintextKeyring

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    chainer = ChainerBackend()  # type: ignore[no-untyped-call]
    keyring_backend(chainer)
    with pytest.raises(PasswordUnavailableError):
        resolve_password(keyring_user="wallet")
    assert any(type(b).__name__ == "EncryptedKeyring" for b in chainer.backends)
    assert any(isinstance(b, PlaintextKeyring) for b in chainer.backends)
    PlaintextKeyring().set_password("waiaas", "wallet", "in-plaintext-file")
    assert resolve_password(keyring_user="wallet") == "in-plaintext-file"


def test_failing_backend_is_unavailable(keyring_backend: Callable[[Any], None]) -> None:
    """Any exception from a backend counts as 'unavailable' (named in the message)."""
    from keyring.backend import KeyringBackend

    class Broken(KeyringBackend):
        priority = 1

        def get_password(self, service: str, username: str) -> str | None:
            raise EOFError("would have prompted")

        def set_password(self, service: str, username: str, password: str) -> None:
            raise NotImplementedError

        def delete_password(self, service: str, username: str) -> None:
            raise NotImplementedError

    keyring_backend(Broken())  # type: ignore[no-untyped-call]
    with pytest.raises(PasswordUnavailableError, match="Broken failed"):
        resolve_password(keyring_user="wallet")


@pytest.mark.parametrize(
    ("explicit", "kwargs", "field"),
    [
        ("", {"keyring_user": "w"}, "password"),
        (b"bytes", {"keyring_user": "w"}, "password"),
        (None, {"keyring_user": ""}, "keyring_user"),
        (None, {"keyring_user": "w", "keyring_service": " "}, "keyring_service"),
    ],
)
def test_validation(
    memory_keyring: Any, explicit: object, kwargs: dict[str, str], field: str
) -> None:
    """Bad arguments are InvalidInputError naming the field."""
    with pytest.raises(InvalidInputError) as err:
        resolve_password(explicit, **kwargs)  # type: ignore[arg-type]
    assert err.value.field == field
