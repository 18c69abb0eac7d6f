"""Hardening of the tasks, the network paths and the mesh, as synthesized."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def w10(synth):
    return synth(canaryWeight="10", trafficRouter="appmesh")


def containers(s) -> list[dict]:
    return [
        c for t in s.resources("AWS::ECS::TaskDefinition").values() for c in t["Properties"]["ContainerDefinitions"]
    ]


def test_every_container_is_non_root_read_only_without_capabilities(w10):
    found = containers(w10)
    assert {c["Name"] for c in found} >= {"app", "envoy"}
    for c in found:
        assert c.get("User") not in (None, "0", "root"), c["Name"]
        assert c["ReadonlyRootFilesystem"] is True, c["Name"]
        linux = c["LinuxParameters"]
        assert linux["Capabilities"]["Drop"] == ["ALL"], c["Name"]
        assert "Add" not in linux["Capabilities"]
        assert linux["InitProcessEnabled"] is True
        assert "Privileged" not in c


def test_envoy_writes_only_to_its_scratch_volume(w10):
    for task in w10.resources("AWS::ECS::TaskDefinition").values():
        props = task["Properties"]
        envoy = [c for c in props["ContainerDefinitions"] if c["Name"] == "envoy"]
        if envoy:
            assert envoy[0]["MountPoints"] == [
                {"ContainerPath": "/tmp", "ReadOnly": False, "SourceVolume": "envoy-tmp"}
            ]
            assert {"Name": "envoy-tmp"} in props["Volumes"]


def test_every_log_group_has_a_retention(w10):
    groups = w10.resources("AWS::Logs::LogGroup")
    assert len(groups) >= 4
    for name, group in groups.items():
        # Ours keep 30 days; the image-copy library's Lambda log groups get CDK's default of 2 years.
        expected = 731 if name.startswith("ImagesCanaryCopy") else 30
        assert group["Properties"].get("RetentionInDays") == expected, name


def test_only_the_needed_ports_are_open(w10):
    resources = w10.template["Resources"]
    ingress = [r["Properties"] for r in w10.resources("AWS::EC2::SecurityGroupIngress").values()]
    inline = [
        rule
        for sg in w10.resources("AWS::EC2::SecurityGroup").values()
        for rule in sg["Properties"].get("SecurityGroupIngress", [])
    ]
    # From the internet: port 80 on the load balancer only.
    public = [r for r in inline + ingress if "CidrIp" in r]
    assert public == [
        {
            "CidrIp": "0.0.0.0/0",
            "Description": "HTTP from 0.0.0.0/0 (allowedCidr)",
            "FromPort": 80,
            "IpProtocol": "tcp",
            "ToPort": 80,
        }
    ]
    # Between security groups: the gateway's listener from the LB, the app port from the gateway.
    assert sorted((r["FromPort"], r["ToPort"]) for r in ingress) == [(3000, 3000), (3000, 3000), (8080, 8080)]
    for rule in ingress:
        assert resources[rule["SourceSecurityGroupId"]["Fn::GetAtt"][0]]["Type"] == "AWS::EC2::SecurityGroup"


def test_allowed_cidr_narrows_the_public_entrypoint(synth):
    s = synth(canaryWeight="10", trafficRouter="appmesh", allowedCidr="203.0.113.0/24")
    public = [
        rule
        for sg in s.resources("AWS::EC2::SecurityGroup").values()
        for rule in sg["Properties"].get("SecurityGroupIngress", [])
        if "CidrIp" in rule
    ]
    assert [(r["CidrIp"], r["FromPort"]) for r in public] == [("203.0.113.0/24", 80)]


def test_images_are_scanned_on_push(w10):
    repo = w10.one("AWS::ECR::Repository")["Properties"]
    assert repo["ImageScanningConfiguration"] == {"ScanOnPush": True}


def test_routes_retry_a_bounded_number_of_times_with_timeouts(w10):
    for route in w10.resources("AWS::AppMesh::Route").values():
        http = route["Properties"]["Spec"]["HttpRoute"]
        assert http["RetryPolicy"] == {
            "HttpRetryEvents": ["server-error", "gateway-error"],
            "TcpRetryEvents": ["connection-error"],
            "MaxRetries": 2,
            "PerRetryTimeout": {"Unit": "ms", "Value": 2000},
        }
        assert http["Timeout"] == {"PerRequest": {"Unit": "ms", "Value": 15000}}


def test_nodes_eject_tasks_that_answer_5xx(w10):
    for node in w10.resources("AWS::AppMesh::VirtualNode").values():
        (listener,) = node["Properties"]["Spec"]["Listeners"]
        assert listener["OutlierDetection"] == {
            "BaseEjectionDuration": {"Unit": "ms", "Value": 30000},
            "Interval": {"Unit": "ms", "Value": 10000},
            "MaxEjectionPercent": 50,
            "MaxServerErrors": 5,
        }
        assert listener["Timeout"]["HTTP"]["PerRequest"] == {"Unit": "ms", "Value": 15000}


def test_execution_roles_pull_only_from_the_named_repository(w10):
    resources = w10.template["Resources"]
    for name, policy in w10.resources("AWS::IAM::Policy").items():
        if "ExecutionRole" not in name:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if "ecr:BatchGetImage" in actions:
                assert resources[statement["Resource"]["Fn::GetAtt"][0]]["Type"] == "AWS::ECR::Repository"
            if statement["Resource"] == "*":
                assert actions == ["ecr:GetAuthorizationToken"], name
