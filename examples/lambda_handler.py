"""A Lambda handler that decrypts its configuration at cold start.

Set in the function's configuration (console "encryption helpers", or
`kms env encrypt VALUE --function-name <function>`):

    DB_PASSWORD   base64 KMS ciphertext, context {"LambdaFunctionName": <function>}
    API_CONFIG    same, of a JSON document

Where KMS is: in AWS Lambda, real KMS in the function's region (the light
SigV4 client, no boto3 import); with AWS_ENDPOINT_URL_KMS, that endpoint
(e.g. `kms serve`, with a `kms create-access-key --service lambda` key); elsewhere, the
embedded engine (KMS_HOME).

Run locally against the embedded engine:

    export AWS_LAMBDA_FUNCTION_NAME=orders-api
    export DB_PASSWORD=$(kms env encrypt 's3cret' --function-name orders-api)
    export API_CONFIG=$(kms env encrypt '{"url": "https://api.example", "retries": 3}' --function-name orders-api)
    python examples/lambda_handler.py

The first `kms env encrypt` creates the AWS-managed key alias/aws/lambda in that
store (as Lambda does in an account); it stays there and is reused afterwards.
"""
from __future__ import annotations

import json

from integrations.lambda_env import get_secret, register_after_restore, with_secrets

# Init phase (once per execution environment): decrypt now, so the first
# request does not pay for it; values stay cached for 300 s (KMS_ENV_MAX_AGE).
API_CONFIG = get_secret("API_CONFIG", transform="json")
register_after_restore()  # SnapStart: decrypt again after a snapshot restore


@with_secrets("DB_PASSWORD")  # re-decrypted only when the cached value expires
def handler(event, context):
    import os
    password = os.environ["DB_PASSWORD"]  # plaintext here, ciphertext in the configuration
    return {"statusCode": 200,
            "body": json.dumps({"api": API_CONFIG["url"], "password_length": len(password),
                                "order": event.get("order")})}


if __name__ == "__main__":
    print(handler({"order": 42}, None))
