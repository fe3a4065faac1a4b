"""Access control: who signed a request (SigV4) and whether their policies allow it (IAM).

Pure, framework-free modules; the HTTP adapters call them. `docs/auth.md` describes the
principals file, the evaluation semantics and a worked example.

- `principals` loads and validates the principals file (keys and IAM policy documents).
- `sigv4` verifies an `Authorization: AWS4-HMAC-SHA256 ...` header against a principal's secret.
- `policy` + `conditions` + `patterns` evaluate IAM identity policies against a request.
- `context` builds the request context (the condition keys a request carries).
- `authorizer` decides, through `cache` (a bounded LRU); `guard` bundles principals, verifier
  and authorizer so a reload swaps them at once.
- `actions` maps wire operations to IAM actions and resource ARNs.
- `errors` holds the refusal types and the AWS error codes an adapter puts on the wire.
- `keys` mints new access key pairs.
"""
