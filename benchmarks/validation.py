"""Validation cost per Encrypt call, side by side with botocore's own ParamValidator.

    python benchmarks/validation.py
"""
import time
import timeit

import botocore.session
from botocore.validate import ParamValidator

from kms_core.validation import check_client_side, check_params, validate

p = {"KeyId": "alias/my-key", "Plaintext": b"x" * 64, "EncryptionContext": {"purpose": "test", "tenant": "a"}}
shape = botocore.session.get_session().get_service_model("kms").operation_model("Encrypt").input_shape
pv = ParamValidator()


def botocore_ParamValidator(op, p):
    pv.validate(p, shape)


res = {}
for f in (validate, check_client_side, check_params, botocore_ParamValidator):
    res[f.__name__] = min(timeit.repeat(lambda: f("Encrypt", p), number=50000, repeat=7,
                                        timer=time.process_time)) / 50000 * 1e6
    print(f"{f.__name__:24s} {res[f.__name__]:.3f} us CPU")
print("validate + check_client_side = %.2f us; botocore ParamValidator / check_client_side = %.1fx"
      % (res["validate"] + res["check_client_side"], res["botocore_ParamValidator"] / res["check_client_side"]))
