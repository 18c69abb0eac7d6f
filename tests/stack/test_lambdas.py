"""Every Lambda function of every template states its timeout and memory, and logs to a log group of
its own stack; every log group states its retention and what happens to it on `cdk destroy`.

Lambda's defaults are 3 s and 128 MB (https://docs.aws.amazon.com/lambda/latest/dg/configuration-timeout.html,
https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html): a deploy-time handler that
makes SDK clients and API calls can pass 3 s on a cold start, and a timed-out handler fails the deploy.
A function without a log group of its stack logs to /aws/lambda/<name>, which Lambda creates on the
first run, never expiring, and which `cdk destroy` leaves behind.
"""

from __future__ import annotations

import pytest
from support.configurations import PIPELINE_CONTEXT
from support.synthesis import CLI_CONTEXT, cdk_json_context

from canary_stack import cdk_app
from canary_stack.constants import PIPELINE_STACK_NAME
from canary_stack.log_groups import RETENTION_DAYS

# Every configuration that adds or removes functions: the two routers, the pipeline stack beside
# the canary stack, and the deploy check's two stacks (integ/integ_canary.py).
CONFIGURATIONS: dict[str, dict[str, str]] = {
    "alb": {"canaryWeight": "10"},
    "appmesh": {"canaryWeight": "10", "trafficRouter": "appmesh"},
    "pipeline": PIPELINE_CONTEXT,
}
# Sane for a function that runs while CloudFormation deploys: long enough for a cold start and the
# SDK's retries, at most Lambda's maximum; from Lambda's smallest memory to a quarter of a vCPU's worth.
TIMEOUT_SECONDS = (10, 900)
MEMORY_MB = (128, 512)

# Log groups kept after `cdk destroy`, each on purpose (docs/cleanup.md): the pipeline's build logs
# are the record of what was deployed and tested (canary_stack/pipeline.py).
RETAINED_LOG_GROUPS = {PIPELINE_STACK_NAME: ("TestLogs", "DeployLogs")}


@pytest.fixture(scope="module")
def templates(synth, tmp_path_factory) -> dict[str, dict]:
    """`<configuration>/<stack>` -> template, the deploy check's included."""
    from integ.integ_canary import build_integ

    found = {
        f"{name}/{stack}": template
        for name, context in CONFIGURATIONS.items()
        for stack, template in synth(**context).templates.items()
    }
    outdir = tmp_path_factory.mktemp("integ-lambdas")
    app = cdk_app.create_app(context={**cdk_json_context(), **CLI_CONTEXT}, outdir=str(outdir))
    build_integ(app)
    found |= {f"integ/{s.stack_name}": s.template for s in app.synth().stacks}
    return found


def functions(templates: dict[str, dict]) -> dict[str, dict]:
    return {
        f"{where}/{logical_id}": resource
        for where, template in templates.items()
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Function"
    }


def test_the_templates_hold_every_kind_of_function(templates):
    # The image copy's two handlers and CDK's three provider functions, the tag mover, CDK's
    # default-security-group handler; the deploy check's probe and integ-tests' provider.
    found = functions(templates)
    alb = [name for name in found if name.startswith("alb/")]
    assert len(alb) == 7, alb
    integ = [name for name in found if name.startswith("integ/")]
    assert len(integ) == 7 + 5 + 2, integ  # production's image copy too, the probe and the provider


def test_every_function_states_a_sane_timeout_and_memory(templates):
    for name, function in functions(templates).items():
        properties = function["Properties"]
        assert "Timeout" in properties and "MemorySize" in properties, f"{name}: Lambda's defaults (3 s, 128 MB)"
        assert TIMEOUT_SECONDS[0] <= properties["Timeout"] <= TIMEOUT_SECONDS[1], (name, properties["Timeout"])
        assert MEMORY_MB[0] <= properties["MemorySize"] <= MEMORY_MB[1], (name, properties["MemorySize"])


def test_the_image_copy_handlers_no_longer_run_on_lambdas_defaults(synth):
    # The case: the library's onEvent/isComplete handlers, replaced by ours (image_copy.js).
    handlers = {
        logical_id: resource["Properties"]
        for logical_id, resource in synth(canaryWeight="10").template["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Function"
        and ("CopyonEventHandler" in logical_id or "CopyisCompleteHandler" in logical_id)
    }
    assert len(handlers) == 2
    for properties in handlers.values():
        assert (properties["Timeout"], properties["MemorySize"]) == (60, 256)


def log_group_of(template: dict, logical_id: str, function: dict) -> str | None:
    """The logical id of the template's log group the function writes to, or None."""
    target = function["Properties"].get("LoggingConfig", {}).get("LogGroup")
    groups = {k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::Logs::LogGroup"}
    if isinstance(target, dict) and target.get("Ref") in groups:
        return target["Ref"]
    # CDK's managed log group (@aws-cdk/aws-lambda:useCdkManagedLogGroup): /aws/lambda/<the function>.
    default_name = {"Fn::Join": ["", ["/aws/lambda/", {"Ref": logical_id}]]}
    named = [k for k, v in groups.items() if v["Properties"].get("LogGroupName") == default_name]
    return named[0] if target is None and named else None


def test_every_function_logs_to_a_log_group_of_its_stack(templates):
    for where, template in templates.items():
        for logical_id, resource in template["Resources"].items():
            if resource["Type"] == "AWS::Lambda::Function":
                assert log_group_of(template, logical_id, resource), f"{where}/{logical_id} logs to /aws/lambda/..."


def test_the_image_copy_build_logs_to_a_log_group_of_its_stack(templates):
    for where, template in templates.items():
        groups = {k for k, v in template["Resources"].items() if v["Type"] == "AWS::Logs::LogGroup"}
        for logical_id, resource in template["Resources"].items():
            if resource["Type"] == "AWS::CodeBuild::Project":
                logs = resource["Properties"]["LogsConfig"]["CloudWatchLogs"]
                assert logs["Status"] == "ENABLED" and logs["GroupName"]["Ref"] in groups, f"{where}/{logical_id}"


def test_every_log_group_states_its_retention_and_its_removal(templates):
    for where, template in templates.items():
        stack = where.split("/", 1)[1]
        for logical_id, resource in template["Resources"].items():
            if resource["Type"] != "AWS::Logs::LogGroup":
                continue
            retention = resource["Properties"].get("RetentionInDays")
            assert retention in (7, RETENTION_DAYS), f"{where}/{logical_id}: retention {retention}"
            retained = logical_id.startswith(RETAINED_LOG_GROUPS.get(stack, ()))
            expected = "Retain" if retained else "Delete"
            assert (resource.get("DeletionPolicy"), resource.get("UpdateReplacePolicy")) == (expected, expected), (
                f"{where}/{logical_id}"
            )


def test_the_librarys_731_day_retained_log_groups_are_gone(synth):
    groups = synth(canaryWeight="10").resources("AWS::Logs::LogGroup").values()
    # Flow logs, each version's, the tag mover's, the security group handler's; the copy's 5 functions
    # and its build.
    assert len(groups) == 11
    assert all(g["Properties"]["RetentionInDays"] == RETENTION_DAYS for g in groups)
    assert all(g["DeletionPolicy"] == "Delete" for g in groups)
