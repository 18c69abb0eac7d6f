"""Operator tools: verify, rollout, offline_diff, promote, committed and make (the Makefile's entry
points), and their core: command.py (arguments in, one exit code and one line out), cdk_cli.py (the
CDK CLI), git.py, files.py (a file written in one step); stats.py (the statistics).

They run from a shell or a pipeline and must answer at once, so nothing here imports aws_cdk,
jsii or constructs (tests/tools/test_layout.py proves it): names they share with the constructs
come from canary_stack/constants.py, which imports nothing heavy, and the context from
canary_stack/context.py, the one reader the app uses too.
"""
