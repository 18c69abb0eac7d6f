"""The deploy check's fixed names. Imports nothing heavy: `make integ`'s preflight and results steps
read them without starting Node.js (jsii)."""

from __future__ import annotations

# Its own stack and repository names: the check never touches a user's CrystalCanary stack or
# ecsdemo-crystal repository, and can run in the same account beside them.
STACK_NAME = "CrystalCanaryInteg"
ASSERTIONS_STACK_NAME = "CrystalCanaryIntegAssertions"
REPOSITORY_NAME = "crystal-canary-integ"

# `/crystal/api` answers; the test header reaches the canary; the canary's share of many requests.
ASSERTION_COUNT = 3
# integ-tests-alpha names each assertion's result output `AssertionResults<construct id>`.
RESULT_OUTPUT_PREFIX = "AssertionResults"
