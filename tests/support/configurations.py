"""Context values several test modules synthesize with: each spelled once, so the `synth` fixture
synthesizes the configuration once (its cache key is the context)."""

from __future__ import annotations

# A well-formed ACM certificate ARN: HTTPS on 443 (tests/stack/test_https.py), with the host name it
# covers (required with it: tests/stack/test_domain.py).
CERTIFICATE = "arn:aws:acm:eu-west-1:123456789012:certificate/0b7e1b2c-1111-2222-3333-444455556666"
DOMAIN = "canary.example.com"
HTTPS_CONTEXT = {"certificateArn": CERTIFICATE, "domainName": DOMAIN}
# A Route 53 hosted zone ID: the stack adds an alias record for DOMAIN in it.
HOSTED_ZONE = "Z0123456789ABCDEFGHIJ"

# A well-formed CodeConnections connection ARN, and the optional pipeline stack with it.
CONNECTION = "arn:aws:codeconnections:eu-west-1:123456789012:connection/0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
PIPELINE_CONTEXT = {
    "pipeline": "true",
    "pipelineConnectionArn": CONNECTION,
    "pipelineRepository": "acme/crystal-canary",
}
