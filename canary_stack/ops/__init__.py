"""Operator tools: verify, rollout, offline_diff (and stats, their statistics).

They run from a shell or a pipeline and must answer at once, so nothing here imports aws_cdk,
jsii or constructs (tests/tools/test_layout.py proves it): names they share with the constructs
come from canary_stack/constants.py, which imports nothing heavy.
"""
