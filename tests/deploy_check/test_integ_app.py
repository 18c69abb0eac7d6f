"""The deploy check's app (integ/integ_canary.py), checked offline: what `make integ` would deploy and
assert, from one in-process synthesis, and its committed snapshot (snapshots/integ/).

`make snapshot` runs this module with UPDATE_SNAPSHOTS=1, as it does tests/stack/test_snapshots.py,
and rewrites snapshots/integ/ from the same synthesis.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from support.scans import scan
from support.snapshot_files import check_no_extra_snapshots, check_snapshot
from support.synthesis import ROOT

from canary_stack.config import ConfigError
from canary_stack.constants import CANARY_HEADER, CANARY_HEADER_VALUE
from integ.integ_canary import (
    API_PATH,
    CANARY_COMMIT,
    CANARY_WEIGHT,
    PROBE_REQUESTS,
    PRODUCTION_COMMIT,
    SHARE_TOLERANCE,
    integ_config,
    stage_canary_source,
)
from integ.names import (
    ASSERTION_COUNT,
    ASSERTIONS_STACK_NAME,
    REPOSITORY_NAME,
    RESULT_OUTPUT_PREFIX,
    STACK_NAME,
    integ_router,
)

SNAPSHOTS = ROOT / "snapshots" / "integ"
HTTP_CALL = "Custom::DeployAssert@HttpCall"
LAMBDA_INVOKE = "Custom::DeployAssert@SdkCallLambdainvoke"


def resources(template: dict, type_: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def only(template: dict, type_: str) -> tuple[str, dict]:
    found = resources(template, type_)
    assert len(found) == 1, f"expected one {type_}, found {sorted(found)}"
    return next(iter(found.items()))


@pytest.fixture(scope="module")
def stack(integ_synth) -> dict:
    return integ_synth.templates[STACK_NAME]


@pytest.fixture(scope="module")
def assertions(integ_synth) -> dict:
    return integ_synth.templates[ASSERTIONS_STACK_NAME]


# --- the stack under test: its own names, destroyable, the default router at weight 10 -----------


def test_the_check_deploys_its_own_two_stacks_and_nothing_of_the_users(integ_synth):
    assert set(integ_synth.templates) == {STACK_NAME, ASSERTIONS_STACK_NAME}
    text = json.dumps(integ_synth.templates)
    # The user's repository and stack names appear nowhere; the alarms carry the check's stack name.
    assert "ecsdemo-crystal" not in text
    alarms = [
        r["Properties"]["AlarmName"]
        for r in resources(integ_synth.templates[STACK_NAME], "AWS::CloudWatch::Alarm").values()
    ]
    assert alarms and all(name.startswith(f"{STACK_NAME}-") for name in alarms)


def test_its_repository_is_its_own_and_goes_with_the_stack_images_included(stack):
    _, repository = only(stack, "AWS::ECR::Repository")
    assert repository["Properties"]["RepositoryName"] == REPOSITORY_NAME
    assert repository["DeletionPolicy"] == "Delete"
    assert repository["UpdateReplacePolicy"] == "Delete"
    # Without EmptyOnDelete, CloudFormation cannot delete a repository that holds the copied image.
    assert repository["Properties"]["EmptyOnDelete"] is True


def test_nothing_in_the_stack_outlives_the_destroy(stack):
    kept = {
        k: v.get("DeletionPolicy")
        for k, v in stack["Resources"].items()
        if v.get("DeletionPolicy", "Delete") != "Delete"
    }
    assert kept == {}


def test_default_router_at_weight_10_on_the_load_balancers_weight_resource(stack):
    weighted = []
    for logical_id, resource in stack["Resources"].items():
        if resource["Type"] not in (
            "AWS::ElasticLoadBalancingV2::Listener",
            "AWS::ElasticLoadBalancingV2::ListenerRule",
        ):
            continue
        props = resource["Properties"]
        for action in props.get("DefaultActions", []) + props.get("Actions", []):
            groups = action.get("ForwardConfig", {}).get("TargetGroups", [])
            if len(groups) == 2:
                weighted.append((logical_id, {g["TargetGroupArn"]["Ref"]: g["Weight"] for g in groups}))
    assert len(weighted) == 1, weighted
    _, weights = weighted[0]
    by_version = {("canary" if "Canary" in ref else "production"): weight for ref, weight in weights.items()}
    assert by_version == {"canary": CANARY_WEIGHT, "production": 100 - CANARY_WEIGHT}
    assert not resources(stack, "AWS::AppMesh::Mesh")


def test_each_version_is_built_with_its_own_commit_and_runs_it(integ_synth, stack):
    # Two image assets: crystal_src/ with code_hash.txt = INTEG-CANARY and = INTEG-PRODUCTION (the
    # service reports it as `commit`). Each is published by its own copy job, under its own hash
    # tag, and that tag is what each version's task runs: the repository starts empty.
    commits = {
        p.read_text().strip(): p.parent.name.removeprefix("asset.")
        for p in integ_synth.outdir.glob("asset.*/code_hash.txt")
    }
    assert sorted(commits) == [CANARY_COMMIT, PRODUCTION_COMMIT]
    resources = stack["Resources"]
    assert resources["CanaryImageCopy"]["Properties"]["ImageContentHash"] == commits[CANARY_COMMIT]
    assert resources["ProductionImageCopy"]["Properties"]["ImageContentHash"] == commits[PRODUCTION_COMMIT]
    images = {
        name: json.dumps(r["Properties"]["ContainerDefinitions"][0]["Image"])
        for name, r in resources.items()
        if r["Type"] == "AWS::ECS::TaskDefinition"
    }
    canary_task = next(name for name in images if name.startswith("Canary"))
    production_task = next(name for name in images if name.startswith("Production"))
    assert f":{commits[CANARY_COMMIT]}" in images[canary_task]
    assert f":{commits[PRODUCTION_COMMIT]}" in images[production_task]


def test_staging_the_source_is_deterministic_and_changes_only_the_commit():
    first, second = stage_canary_source(), stage_canary_source()
    assert first == second
    assert (first / "code_hash.txt").read_text() == CANARY_COMMIT + "\n"
    source = ROOT / "crystal_src"
    for path in (source / "src").rglob("*"):
        if path.is_file():
            assert (first / path.relative_to(source)).read_bytes() == path.read_bytes()
    assert (first / "Dockerfile").read_bytes() == (source / "Dockerfile").read_bytes()
    assert stage_canary_source("OTHER") != first


def test_the_configuration_goes_through_the_apps_own_validation():
    committed = {"productionImage": "0" * 64}  # cdk.json's; the check builds production's image itself
    config = integ_config(
        {**committed, "canaryWeight": 0, "trafficRouter": "appmesh", "repositoryName": "ecsdemo-crystal"}
    )
    # The check's values win over cdk.json's and -c's.
    assert (config.canary_weight, config.traffic_router, config.repository_name) == (10, "alb", REPOSITORY_NAME)
    with pytest.raises(ConfigError, match="productionTag must differ from imageTag"):
        integ_config({**committed, "imageTag": "same", "productionTag": "same"})


# --- the assertions -------------------------------------------------------------------------------


def expected(resource: dict) -> dict:
    return json.loads(resource["Properties"]["expected"])


def calls_api_url(resource: dict) -> None:
    parts = resource["Properties"]["parameters"]["url"]["Fn::Join"][1]
    assert parts[0] == "http://" and parts[-1] == API_PATH
    # The load balancer of the stack under test, read from that stack's outputs.
    reference = json.dumps(parts[1])
    assert STACK_NAME in reference and "LoadBalancer" in reference and "DNSName" in reference


def test_three_assertions_each_reporting_a_result_output(assertions):
    calls = {**resources(assertions, HTTP_CALL), **resources(assertions, LAMBDA_INVOKE)}
    assert len(calls) == ASSERTION_COUNT == 3
    outputs = {k for k in assertions["Outputs"] if k.startswith(RESULT_OUTPUT_PREFIX)}
    assert outputs == {f"{RESULT_OUTPUT_PREFIX}{k}" for k in calls}


def test_the_api_answers_200_with_the_services_json(assertions):
    plain = [r for r in resources(assertions, HTTP_CALL).values() if not r["Properties"]["parameters"]["fetchOptions"]]
    assert len(plain) == 1
    calls_api_url(plain[0])
    assert expected(plain[0]) == {
        "$ObjectLike": {
            "status": 200,
            "headers": {"content-type": ["application/json"]},
            "body": {"from": "Crystal backend"},
        }
    }


def test_the_test_header_reaches_the_canary(assertions):
    with_header = [
        r for r in resources(assertions, HTTP_CALL).values() if r["Properties"]["parameters"]["fetchOptions"]
    ]
    assert len(with_header) == 1
    calls_api_url(with_header[0])
    assert with_header[0]["Properties"]["parameters"]["fetchOptions"] == {
        "headers": {CANARY_HEADER: CANARY_HEADER_VALUE}
    }
    assert expected(with_header[0]) == {"$ObjectLike": {"status": 200, "body": {"commit": CANARY_COMMIT}}}


def test_the_split_is_measured_over_at_least_200_requests_within_7_points(assertions):
    _, invoke = only(assertions, LAMBDA_INVOKE)
    parameters = invoke["Properties"]["parameters"]
    probe_ids = [k for k in resources(assertions, "AWS::Lambda::Function") if k.startswith("SplitProbe")]
    assert len(probe_ids) == 1
    # integ-tests JSON-encodes every parameter; its provider JSON-decodes them before the SDK call.
    assert parameters["FunctionName"] == {"Fn::Join": ["", ['"', {"Ref": probe_ids[0]}, '"']]}
    # CloudFormation splices the load balancer's name in; the provider's decoding must then give the
    # JSON text Lambda receives as the event.
    parts = parameters["Payload"]["Fn::Join"][1]
    assert [type(p) for p in parts] == [str, dict, str] and "Fn::GetStackOutput" in parts[1]
    decoded = json.loads("".join(p if isinstance(p, str) else "HOST.elb.amazonaws.com" for p in parts))
    assert isinstance(decoded, str)
    event = json.loads(decoded)
    assert event["url"] == f"http://HOST.elb.amazonaws.com{API_PATH}"
    assert event["requests"] == PROBE_REQUESTS >= 200
    assert (event["weight"], event["tolerance"]) == (CANARY_WEIGHT, SHARE_TOLERANCE) == (10, 7)
    assert event["canaryCommit"] == CANARY_COMMIT
    assert expected(invoke) == {
        "$ObjectLike": {
            "StatusCode": 200,
            "Payload": {
                "$SerializedJson": {"$ObjectLike": {"requests": PROBE_REQUESTS, "failed": 0, "withinTolerance": True}}
            },
        }
    }


def test_the_assertions_run_in_order(assertions):
    plain, header = sorted(
        resources(assertions, HTTP_CALL).items(), key=lambda kv: bool(kv[1]["Properties"]["parameters"]["fetchOptions"])
    )
    split_id, split = only(assertions, LAMBDA_INVOKE)
    assert plain[0] in header[1].get("DependsOn", [])
    assert header[0] in split.get("DependsOn", [])


def test_the_assertions_are_deterministic(assertions):
    # integ-tests-alpha salts each assertion with Date.now(); the check pins it (see _fixed_salt).
    salts = [
        r["Properties"]["salt"]
        for r in {**resources(assertions, HTTP_CALL), **resources(assertions, LAMBDA_INVOKE)}.values()
    ]
    assert sorted(salts) == ["deploy-check-answers", "deploy-check-header", "deploy-check-split"]


def test_every_assertion_function_runs_on_nodejs24(assertions):
    # nodejs24.x is deprecated by Lambda on 2028-04-30 (https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html);
    # the team's rule: no runtime deprecated before 2028. The probe and integ-tests' provider alike.
    functions = resources(assertions, "AWS::Lambda::Function")
    assert len(functions) == 2
    assert {r["Properties"]["Runtime"] for r in functions.values()} == {"nodejs24.x"}
    probe = next(r for k, r in functions.items() if k.startswith("SplitProbe"))
    assert probe["Properties"]["Code"]["ZipFile"] == (ROOT / "integ" / "share_probe.js").read_text()
    assert probe["Properties"]["Handler"] == "index.handler"


# --- cdk-nag and cfn-lint -------------------------------------------------------------------------


def test_cdk_nag_ran_on_the_integ_app_and_only_acknowledged_findings_remain(integ_synth):
    report = json.loads((integ_synth.outdir / "validation-report.json").read_text())
    (nag,) = [p for p in report["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    assert nag["conclusion"] == "success" and nag["violations"] == []
    probe = [
        v
        for v in nag["suppressedViolations"]
        for c in v["violatingConstructs"]
        if c["constructPath"].startswith(f"{ASSERTIONS_STACK_NAME}/")
    ]
    # The one integ-only finding: the probe's role uses the basic execution policy; acknowledged there.
    assert [(v["ruleName"].split("[")[0], v["acknowledgedAt"]) for v in probe] == [
        ("AwsSolutions-IAM4", f"{ASSERTIONS_STACK_NAME}/SplitProbe/Function")
    ]
    assert all(v["reason"] for v in probe)


def test_cfn_lint_finds_nothing_in_the_integ_templates(integ_synth, integ_synth_lattice):
    # One run; .cfnlintrc.yaml's ignores apply as for the app's templates. W3037 ("'invoke' is not an
    # IAM action of lambda") is ignored here only: integ-tests-alpha's provider adds `lambda:Invoke`
    # on "*" for every invoke_function, a non-existent action that grants nothing (the next test pins
    # it); the real permission is lambda:InvokeFunction on the probe alone.
    templates = sorted(p for s in (integ_synth, integ_synth_lattice) for p in s.outdir.glob("*.template.json"))
    assert len(templates) == 4  # both stacks, for each router the check deploys
    # On the command line, --ignore-checks replaces the config file's list instead of adding to it.
    ignored = yaml.safe_load((ROOT / ".cfnlintrc.yaml").read_text())["ignore_checks"]
    cfn_lint = str(Path(sys.executable).with_name("cfn-lint"))
    argv = [cfn_lint, "--format", "parseable", *map(str, templates), "--ignore-checks", *ignored, "W3037"]
    # A clean verdict on the same templates is kept in build/scans/ (tests/support/scans.py).
    result = scan("cfn-lint-integ", argv, inputs=templates, config=[ROOT / ".cfnlintrc.yaml"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_only_iam_oddity_is_integ_tests_own_lambda_invoke(assertions):
    roles = resources(assertions, "AWS::IAM::Role")
    statements = [
        (logical_id, statement)
        for logical_id, role in roles.items()
        for policy in role["Properties"].get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
    ]
    assert [(k.startswith("SingletonFunction"), s["Action"], s["Resource"]) for k, s in statements] == [
        (True, ["lambda:Invoke"], ["*"]),
        (
            True,
            ["lambda:InvokeFunction"],
            [
                {
                    "Fn::Join": [
                        "",
                        [
                            "arn:",
                            {"Ref": "AWS::Partition"},
                            ":lambda:",
                            {"Ref": "AWS::Region"},
                            ":",
                            {"Ref": "AWS::AccountId"},
                            ":function:",
                            {
                                "Ref": next(
                                    k
                                    for k in resources(assertions, "AWS::Lambda::Function")
                                    if k.startswith("SplitProbe")
                                )
                            },
                        ],
                    ]
                }
            ],
        ),
    ]


# --- the snapshot ---------------------------------------------------------------------------------


def snapshot_name(stack_name: str, router: str) -> str:
    return f"{stack_name}.template.json" if router == "alb" else f"{stack_name}.{router}.template.json"


@pytest.mark.parametrize("router", ["alb", "lattice"])
@pytest.mark.parametrize("stack_name", [STACK_NAME, ASSERTIONS_STACK_NAME])
def test_integ_snapshot_is_current(request, router, stack_name):
    synthesis = request.getfixturevalue("integ_synth" if router == "alb" else "integ_synth_lattice")
    path = SNAPSHOTS / snapshot_name(stack_name, router)
    command = "python -m integ.integ_canary" + ("" if router == "alb" else f" (ROUTER={router})")
    check_snapshot(path, synthesis.templates[stack_name], f"snapshots/integ/{path.name} ({command})")


def test_no_integ_snapshot_without_a_stack(integ_synth, integ_synth_lattice):
    check_no_extra_snapshots(
        SNAPSHOTS,
        [snapshot_name(name, "alb") for name in integ_synth.templates]
        + [snapshot_name(name, "lattice") for name in integ_synth_lattice.templates],
    )


# --- make integ ROUTER=lattice --------------------------------------------------------------------


@pytest.mark.parametrize(
    "environ, router",
    [({}, "alb"), ({"CANARY_MAKE_ROUTER": "alb"}, "alb"), ({"CANARY_MAKE_ROUTER": "lattice"}, "lattice")],
)
def test_router_is_the_default_or_the_one_make_integ_was_given(environ, router):
    assert integ_router(environ) == router


@pytest.mark.parametrize(
    "raw, message",
    [
        ("appmesh", "ROUTER=appmesh: AWS App Mesh reached end of support on 2026-09-30"),
        ("linkerd", "ROUTER must be alb or lattice for make integ (or left out: alb), got 'linkerd'"),
        ("", "ROUTER must be alb or lattice for make integ (or left out: alb), got ''"),
    ],
)
def test_a_router_the_check_cannot_deploy_is_refused_in_one_line(raw, message):
    with pytest.raises(ValueError) as err:
        integ_router({"CANARY_MAKE_ROUTER": raw})
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_with_lattice_the_check_deploys_the_lattice_router_at_weight_10(integ_synth_lattice):
    stack = integ_synth_lattice.templates[STACK_NAME]
    assert "(lattice router)" in stack["Description"]
    registered = {
        config["TargetGroupArn"]["Fn::GetAtt"][0]: ("canary" if name.startswith("Canary") else "production")
        for name, service in resources(stack, "AWS::ECS::Service").items()
        for config in service["Properties"].get("VpcLatticeConfigurations", [])
    }
    (weighted,) = [
        r["Properties"]["Action"]["Forward"]["TargetGroups"]
        for r in resources(stack, "AWS::VpcLattice::Rule").values()
        if len(r["Properties"]["Action"]["Forward"]["TargetGroups"]) == 2
    ]
    by_version = {registered[g["TargetGroupIdentifier"]["Fn::GetAtt"][0]]: g["Weight"] for g in weighted}
    assert by_version == {"canary": CANARY_WEIGHT, "production": 100 - CANARY_WEIGHT}
    # The load balancer forwards everything to the proxy; no App Mesh, no weighted listener rule.
    assert not resources(stack, "AWS::ElasticLoadBalancingV2::ListenerRule")
    assert not resources(stack, "AWS::AppMesh::Mesh")
    _, service = only(stack, "AWS::VpcLattice::Service")
    assert service["Properties"]["CustomDomainName"] == "crystal.appmeshworkshop.pvt.local"


def test_with_lattice_the_same_three_assertions_ask_through_the_load_balancer(integ_synth, integ_synth_lattice):
    # The proxy sits behind the same load balancer: the three assertions are the default router's.
    default = integ_synth.templates[ASSERTIONS_STACK_NAME]["Resources"]
    lattice = integ_synth_lattice.templates[ASSERTIONS_STACK_NAME]["Resources"]
    for key, resource in default.items():
        if resource["Type"].startswith("Custom::DeployAssert@"):
            assert lattice[key] == resource, key


def test_with_lattice_the_check_finds_the_canary_s_metric_under_the_alarms_dimension(integ_synth_lattice):
    """AWS's Lattice metrics page names the TargetGroup dimension, not the form of its value; the
    alarms use the target group's ID (canary_stack/routers/lattice.py). After the split's requests,
    the check asks ListMetrics for exactly the alarms' namespace, metric and dimension, and waits
    for it: an alarm on a dimension value CloudWatch never publishes would never fire."""
    assertions = integ_synth_lattice.templates[ASSERTIONS_STACK_NAME]
    stack = integ_synth_lattice.templates[STACK_NAME]
    _, call = only(assertions, "Custom::DeployAssert@SdkCallCloudWatchlistMetrics")
    props = call["Properties"]
    assert (props["service"], props["api"]) == ("CloudWatch", "listMetrics")
    assert "stateMachineArn" in props  # waited for (wait_for_assertions), not asked once
    alarm = stack["Resources"][
        next(
            k for k, v in stack["Resources"].items() if v["Type"] == "AWS::CloudWatch::Alarm" and "5xx" in json.dumps(v)
        )
    ]
    requests = next(q["MetricStat"]["Metric"] for q in alarm["Properties"]["Metrics"] if q.get("Id") == "requests")
    assert json.loads(props["parameters"]["Namespace"]) == requests["Namespace"] == "AWS/VpcLattice"
    assert json.loads(props["parameters"]["MetricName"]) == requests["MetricName"]
    (dimension,) = requests["Dimensions"]
    assert dimension["Name"] == "TargetGroup" and dimension["Value"] == {
        "Fn::GetAtt": [dimension["Value"]["Fn::GetAtt"][0], "Id"]
    }
    canary_targets = dimension["Value"]["Fn::GetAtt"][0]
    # The same attribute, handed across the stacks: the output the assertion reads is that GetAtt.
    (output_name,) = [
        piece["Fn::GetStackOutput"]["OutputName"]
        for piece in props["parameters"]["Dimensions"]["Fn::Join"][1]
        if isinstance(piece, dict)
    ]
    assert stack["Outputs"][output_name]["Value"] == {"Fn::GetAtt": [canary_targets, "Id"]}
    assert json.loads(props["expected"]) == {
        "$ObjectLike": {"Metrics": {"$ArrayWith": [{"$ObjectLike": {"MetricName": requests["MetricName"]}}]}}
    }


def test_with_lattice_nothing_outlives_the_destroy(integ_synth_lattice):
    stack = integ_synth_lattice.templates[STACK_NAME]
    kept = {
        k: v.get("DeletionPolicy")
        for k, v in stack["Resources"].items()
        if v.get("DeletionPolicy", "Delete") != "Delete"
    }
    assert kept == {}
    _, repository = only(stack, "AWS::ECR::Repository")
    assert repository["Properties"]["RepositoryName"] == REPOSITORY_NAME
