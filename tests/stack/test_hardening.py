"""Hardening of the tasks, the network paths and the mesh, as synthesized: on every router where each
has the thing hardened, on App Mesh for its own parts (Envoy, its stats agent, the routes)."""

from __future__ import annotations

import pytest
from support.templates import containers, ref_name

from canary_stack.routers.appmesh_tasks import SCRATCH_OWNER, SCRATCH_OWNER_IMAGE

ROUTER_CONTEXT: dict[str, dict[str, str]] = {
    "appmesh": {"trafficRouter": "appmesh"},
    "alb": {},
    "lattice": {"trafficRouter": "lattice"},
}
# The containers that serve, by router: the app, plus App Mesh's sidecars or Lattice's ingress proxy.
SERVING = {"appmesh": {"app", "envoy", "cwagent"}, "alb": {"app"}, "lattice": {"app", "nginx"}}


@pytest.fixture(scope="module")
def w10(synth):
    return synth(canaryWeight="10", trafficRouter="appmesh")


@pytest.fixture(params=list(ROUTER_CONTEXT))
def routed(request, synth):
    """(router, its synthesis at weight 10), for each router."""
    return request.param, synth(canaryWeight="10", **ROUTER_CONTEXT[request.param])


def test_every_serving_container_is_non_root_without_capabilities(routed):
    router, s = routed
    found = [c for c in containers(s) if c["Name"] != SCRATCH_OWNER]
    assert {c["Name"] for c in found} == SERVING[router]
    for c in found:
        assert c.get("User") not in (None, "0", "root"), c["Name"]
        linux = c["LinuxParameters"]
        assert linux["Capabilities"]["Drop"] == ["ALL"], c["Name"]
        assert "Add" not in linux["Capabilities"]
        assert linux["InitProcessEnabled"] is True
        assert "Privileged" not in c


def test_the_app_runs_as_a_non_root_user_and_group(routed):
    # ECS's `user` is "user", "user:group", "uid" or "uid:gid"
    # (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ContainerDefinition.html, "user").
    # A bare uid takes its group from the image's /etc/passwd; crystal_src's image is `scratch`,
    # which has none, so the process would run with group 0 (root's group).
    _, s = routed
    apps = [c for c in containers(s) if c["Name"] == "app"]
    assert len(apps) == 2  # production and canary
    for app in apps:
        user, _, group = app["User"].partition(":")
        assert (user, group) == ("10001", "10001")


def test_root_file_systems_are_read_only_except_envoys(routed):
    # Envoy's is writable: App Mesh's agent writes Envoy's bootstrap to /tmp as user 1337, and a
    # root-owned scratch volume there crashes it the same way (aws/aws-app-mesh-roadmap#433).
    _, s = routed
    for c in containers(s):
        assert c["ReadonlyRootFilesystem"] is (c["Name"] != "envoy"), c["Name"]
        if c["Name"] == "envoy":
            assert c["User"] == "1337" and "MountPoints" not in c


def test_every_volume_a_non_root_container_writes_is_first_given_to_its_user(w10):
    # ECS mounts a task's bind-mount volumes owned by root, mode 0755: a non-root container can
    # write one only after a container it waits for (condition SUCCESS) changed the owner
    # (aws/containers-roadmap#938).
    checked = 0
    for task in w10.resources("AWS::ECS::TaskDefinition").values():
        by_name = {c["Name"]: c for c in task["Properties"]["ContainerDefinitions"]}
        for c in by_name.values():
            writable = [m for m in c.get("MountPoints", []) if not m["ReadOnly"]]
            if not writable or c.get("User") in (None, "0"):
                continue
            (owner,) = [by_name[d["ContainerName"]] for d in c["DependsOn"] if d["Condition"] == "SUCCESS"]
            assert owner["EntryPoint"] == ["chown"]
            user, *paths = owner["Command"]
            assert user == f"{c['User']}:{c['User']}"
            owned = {m["SourceVolume"] for m in owner["MountPoints"] if m["ContainerPath"] in paths}
            assert {m["SourceVolume"] for m in writable} <= owned, c["Name"]
            checked += 1
    assert checked == 2  # the CloudWatch agent of each version


# Docker's default capabilities (https://docs.docker.com/engine/containers/run/#runtime-privilege-and-linux-capabilities).
DOCKER_DEFAULT_CAPABILITIES = (
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
)


def test_no_container_adds_a_capability_fargate_refuses(routed):
    # "Tasks launched on AWS Fargate only support adding the SYS_PTRACE kernel capability"
    # (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_KernelCapabilities.html).
    _, s = routed
    for c in containers(s):
        assert set(c.get("LinuxParameters", {}).get("Capabilities", {}).get("Add", [])) <= {"SYS_PTRACE"}, c["Name"]


def test_the_scratch_owner_can_only_chown_and_exits(w10):
    owners = [c for c in containers(w10) if c["Name"] == SCRATCH_OWNER]
    assert len(owners) == 2
    for owner in owners:
        assert owner["Image"] == SCRATCH_OWNER_IMAGE and ":latest" not in owner["Image"]
        assert owner["User"] == "0" and owner["Essential"] is False
        # Every default capability but CHOWN dropped (Fargate cannot add any but SYS_PTRACE).
        capabilities = owner["LinuxParameters"]["Capabilities"]
        assert "Add" not in capabilities
        assert set(DOCKER_DEFAULT_CAPABILITIES) - set(capabilities["Drop"]) == {"CHOWN"}
        assert owner["ReadonlyRootFilesystem"] is True
        assert "PortMappings" not in owner and "Environment" not in owner


def test_every_log_group_has_a_retention(routed):
    _, s = routed
    groups = s.resources("AWS::Logs::LogGroup")
    assert len(groups) >= 4
    for name, group in groups.items():
        # 30 days, the image-copy library's Lambda log groups too (CDK's default would be 731,
        # retained: tests/stack/test_lambdas.py).
        assert group["Properties"].get("RetentionInDays") == 30, name


def test_only_the_needed_ports_are_open(routed):
    router, s = routed
    resources = s.template["Resources"]
    ingress = [r["Properties"] for r in s.resources("AWS::EC2::SecurityGroupIngress").values()]
    inline = [
        rule
        for sg in s.resources("AWS::EC2::SecurityGroup").values()
        for rule in sg["Properties"].get("SecurityGroupIngress", [])
    ]
    # From the internet: port 80 on the load balancer only. With Lattice, also port 80 of the
    # service network's VPC association, from the VPC's own range.
    public = [r for r in inline + ingress if "CidrIp" in r]
    from_the_vpc = [r for r in public if isinstance(r["CidrIp"], dict)]
    assert [r for r in public if r not in from_the_vpc] == [
        {
            "CidrIp": "0.0.0.0/0",
            "Description": "HTTP from 0.0.0.0/0 (allowedCidr)",
            "FromPort": 80,
            "IpProtocol": "tcp",
            "ToPort": 80,
        }
    ]
    if router == "lattice":
        (vpc,) = s.resources("AWS::EC2::VPC")
        assert [(r["CidrIp"], r["FromPort"], r["ToPort"]) for r in from_the_vpc] == [
            ({"Fn::GetAtt": [vpc, "CidrBlock"]}, 80, 80)
        ]
    else:
        assert from_the_vpc == []
    # Between security groups: the app port of each version (from the gateway with App Mesh, from
    # the LB with the ALB router, from Lattice's managed prefix list with Lattice), and with App Mesh
    # the gateway's listener and its Envoy's admin port (health checks) from the LB, with Lattice the
    # proxy's port from the LB.
    extra = {"appmesh": [(8080, 8080), (9901, 9901)], "alb": [], "lattice": [(8080, 8080)]}[router]
    assert sorted((r["FromPort"], r["ToPort"]) for r in ingress) == sorted([(3000, 3000), (3000, 3000)] + extra)
    for rule in ingress:
        if router == "lattice" and rule["FromPort"] == 3000:
            source = resources[ref_name(rule["SourcePrefixListId"])]
            assert source["Type"] == "Custom::AWS"  # the prefix list lookup (test_lattice.py)
            continue
        assert resources[ref_name(rule["SourceSecurityGroupId"])]["Type"] == "AWS::EC2::SecurityGroup"


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


# The CDK bootstrap's repository of image assets in this account and region: where the Lattice
# proxy's image (FROM nginx, plus its nginx.conf) is published by `cdk deploy`.
CDK_ASSETS_REPOSITORY = {
    "Fn::Join": [
        "",
        [
            "arn:",
            {"Ref": "AWS::Partition"},
            ":ecr:",
            {"Ref": "AWS::Region"},
            ":",
            {"Ref": "AWS::AccountId"},
            ":repository/",
            {"Fn::Sub": "cdk-hnb659fds-container-assets-${AWS::AccountId}-${AWS::Region}"},
        ],
    ]
}


def test_execution_roles_pull_only_from_the_named_repository(routed):
    router, s = routed
    resources = s.template["Resources"]
    pulls = 0
    for name, policy in s.resources("AWS::IAM::Policy").items():
        if "ExecutionRole" not in name:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if "ecr:BatchGetImage" in actions and name.startswith("RouterProxy"):
                # The Lattice proxy's image is an asset: it pulls from the CDK assets repository only.
                assert router == "lattice" and statement["Resource"] == CDK_ASSETS_REPOSITORY
            elif "ecr:BatchGetImage" in actions:
                assert resources[ref_name(statement["Resource"])]["Type"] == "AWS::ECR::Repository"
                pulls += 1
            if statement["Resource"] == "*":
                assert actions == ["ecr:GetAuthorizationToken"], name
    assert pulls == 2  # production's and the canary's task pull the app image
