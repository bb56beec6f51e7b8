"""`kms demo` step: a Lambda-style secret encrypted and decrypted on the
embedded defaults, then an encrypted .env file and its tamper check."""
from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import Any

DEMO_FUNCTION = "demo-orders-api"
DEMO_SECRET = "demo-only-password-1234"  # made up for the demo, printed on purpose


def run(kms: Any, workdir: pathlib.Path, say: Callable[[str], None]) -> None:
    from .core import EnvSecrets, encrypt_value  # noqa: PLC0415 - cold start: `kms demo` lists its steps first
    from .envfile import decrypt_env_file, encrypt_env_file  # noqa: PLC0415 - cold start: as above
    from .errors import EnvFileTamperedError  # noqa: PLC0415 - cold start: as above

    value = encrypt_value(DEMO_SECRET, kms=kms, function_name=DEMO_FUNCTION)
    say(f"Encrypted DB_PASSWORD the Lambda console's way (alias/aws/lambda, context "
        f"LambdaFunctionName={DEMO_FUNCTION}): {value[:32]}… ({len(value)} chars)")
    environ = {"AWS_LAMBDA_FUNCTION_NAME": DEMO_FUNCTION, "DB_PASSWORD": value}
    secrets = EnvSecrets(kms=kms, environ=environ)
    plaintext = secrets.get("DB_PASSWORD")
    if plaintext != DEMO_SECRET:
        raise RuntimeError("the demo secret did not decrypt to what was encrypted")
    say(f"get_secret('DB_PASSWORD') -> {plaintext!r} (cached for {secrets.max_age:.0f} s)")

    path = workdir / ".env.encrypted"
    path.write_text(encrypt_env_file({"DB_PASSWORD": DEMO_SECRET, "API_TOKEN": "demo-token"},
                                     kms=kms, function_name=DEMO_FUNCTION))
    names = list(decrypt_env_file(path.read_text(), kms=kms))
    say(f"Wrote {path} (names readable, values encrypted, MAC over the file); "
        f"it decrypts to {', '.join(names)}")
    lines = path.read_text().split("\n")
    swapped = "\n".join([lines[0], lines[2], lines[1], *lines[3:]])
    try:
        decrypt_env_file(swapped, kms=kms)
    except EnvFileTamperedError:
        say("Swapping two lines of it is detected: EnvFileTamperedError")
    else:
        raise RuntimeError("the tampered demo file was not detected")
