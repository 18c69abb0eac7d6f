"""The Lattice router's own parts, as synthesized (`-c trafficRouter=lattice`): the service network and
who may call it, the service and its name, the target groups and how ECS registers the tasks in them,
the deploy-time prefix list, the ingress proxy, and the alarms' metrics. What every router promises
(the split, the header route, one resource per step) is in test_routers.py and test_determinism.py.
"""

from __future__ import annotations

import json
import re

import pytest
from support.templates import container, ref_name, version_of_target_group

from canary_stack import cdk_app
from canary_stack.constants import (
    APP_PORT,
    CANARY_HEADER,
    HEALTH_PATH,
    LATTICE_LISTENER_PORT,
    LATTICE_PROXY_DIR,
    LATTICE_PROXY_HEALTH_PATH,
    LATTICE_PROXY_PORT,
    LATTICE_PROXY_UID,
    NAMESPACE_NAME,
    VIRTUAL_SERVICE_NAME,
)
from canary_stack.ingress import PublicEntrypoint
from canary_stack.network import Network
from canary_stack.routers.lattice import (
    APP_PORT_NAME,
    ECS_LATTICE_POLICY,
    ECS_PRINCIPAL,
    ERRORS_METRIC,
    LATENCY_METRIC,
    METRICS_NAMESPACE,
    REQUESTS_METRIC,
    TARGET_GROUP_DIMENSION,
    cpu_architecture_of,
)
from canary_stack.routers.lattice_proxy import PROXY_CONTAINER, SCRATCH_PATH, LatticeProxy
from canary_stack.service import CrystalService

LATTICE = {"trafficRouter": "lattice"}


@pytest.fixture(scope="module")
def s(synth):
    return synth(canaryWeight="10", **LATTICE)


def resource(s, logical_id: str) -> dict:
    return s.template["Resources"][logical_id]


def only(s, type_: str) -> tuple[str, dict]:
    found = s.resources(type_)
    assert len(found) == 1, sorted(found)
    return next(iter(found.items()))


def versions_service(s, version: str) -> tuple[str, dict]:
    (found,) = [
        (k, v) for k, v in s.resources("AWS::ECS::Service").items() if k.startswith(version) and "Router" not in k
    ]
    return found


def evaluate_join(node, region: str = "eu-west-1"):
    """A Fn::Join with AWS::Region in it, as CloudFormation would evaluate it in `region`."""
    if isinstance(node, str):
        return node
    if node == {"Ref": "AWS::Region"}:
        return region
    (function, (separator, parts)) = next(iter(node.items()))
    assert function == "Fn::Join"
    return separator.join(evaluate_join(p, region) for p in parts)


# --- who may call the service ---------------------------------------------------------------------


def test_the_service_network_requires_iam_auth_and_admits_this_vpc_only(s):
    network_id, network = only(s, "AWS::VpcLattice::ServiceNetwork")
    assert network["Properties"]["AuthType"] == "AWS_IAM"
    (vpc,) = s.resources("AWS::EC2::VPC")
    _, policy = only(s, "AWS::VpcLattice::AuthPolicy")
    assert policy["Properties"]["ResourceIdentifier"] == {"Fn::GetAtt": [network_id, "Id"]}
    # One statement: anyone (signed or not) whose request comes from this VPC
    # (https://docs.aws.amazon.com/vpc-lattice/latest/ug/auth-policies.html, vpc-lattice-svcs:SourceVpc).
    assert policy["Properties"]["Policy"]["Statement"] == [
        {
            "Sid": "CallersInThisVpc",
            "Effect": "Allow",
            "Principal": "*",
            "Action": "vpc-lattice-svcs:Invoke",
            "Resource": "*",
            "Condition": {"StringEquals": {"vpc-lattice-svcs:SourceVpc": {"Ref": vpc}}},
        }
    ]
    # The service itself adds no auth of its own: the network's policy is the gate.
    _, service = only(s, "AWS::VpcLattice::Service")
    assert service["Properties"]["AuthType"] == "NONE"


def test_the_vpc_joins_the_network_through_a_security_group_open_to_the_vpc_on_the_listener_port(s):
    network_id, _ = only(s, "AWS::VpcLattice::ServiceNetwork")
    (vpc,) = s.resources("AWS::EC2::VPC")
    _, association = only(s, "AWS::VpcLattice::ServiceNetworkVpcAssociation")
    props = association["Properties"]
    assert props["ServiceNetworkIdentifier"] == {"Fn::GetAtt": [network_id, "Id"]}
    assert props["VpcIdentifier"] == {"Ref": vpc}
    (group,) = props["SecurityGroupIds"]
    rules = resource(s, ref_name(group))["Properties"]["SecurityGroupIngress"]
    assert [(r["CidrIp"], r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in rules] == [
        ({"Fn::GetAtt": [vpc, "CidrBlock"]}, "tcp", LATTICE_LISTENER_PORT, LATTICE_LISTENER_PORT)
    ]


# --- the service, its name and its logs ------------------------------------------------------------


def test_the_service_answers_on_the_workshops_name_in_a_private_zone_of_this_vpc(s):
    service_id, service = only(s, "AWS::VpcLattice::Service")
    assert service["Properties"]["CustomDomainName"] == VIRTUAL_SERVICE_NAME == "crystal.appmeshworkshop.pvt.local"
    network_id, _ = only(s, "AWS::VpcLattice::ServiceNetwork")
    _, association = only(s, "AWS::VpcLattice::ServiceNetworkServiceAssociation")
    assert association["Properties"] == {
        "ServiceIdentifier": {"Fn::GetAtt": [service_id, "Id"]},
        "ServiceNetworkIdentifier": {"Fn::GetAtt": [network_id, "Id"]},
    }
    zone_id, zone = only(s, "AWS::Route53::HostedZone")
    (vpc,) = s.resources("AWS::EC2::VPC")
    assert zone["Properties"]["Name"] == NAMESPACE_NAME + "."
    assert [v["VPCId"] for v in zone["Properties"]["VPCs"]] == [{"Ref": vpc}]  # private: this VPC only
    _, record = only(s, "AWS::Route53::RecordSet")
    assert record["Properties"]["HostedZoneId"] == {"Ref": zone_id}
    assert (record["Properties"]["Name"], record["Properties"]["Type"]) == (VIRTUAL_SERVICE_NAME + ".", "CNAME")
    # The DNS name Lattice gives the service (AWS::VpcLattice::Service DnsEntry.DomainName).
    assert record["Properties"]["ResourceRecords"] == [{"Fn::GetAtt": [service_id, "DnsEntry.DomainName"]}]


def test_only_the_lattice_router_creates_a_hosted_zone(synth, s):
    # A hosted zone is billed monthly; the ALB router needs none.
    assert not synth(canaryWeight="10").resources("AWS::Route53::HostedZone")
    assert len(s.resources("AWS::Route53::HostedZone")) == 1


def test_the_service_logs_every_request_to_a_log_group_with_a_retention(s):
    service_id, _ = only(s, "AWS::VpcLattice::Service")
    _, subscription = only(s, "AWS::VpcLattice::AccessLogSubscription")
    assert subscription["Properties"]["ResourceIdentifier"] == {"Fn::GetAtt": [service_id, "Arn"]}
    (group, attribute) = subscription["Properties"]["DestinationArn"]["Fn::GetAtt"]
    assert attribute == "Arn"
    assert resource(s, group)["Type"] == "AWS::Logs::LogGroup"
    assert resource(s, group)["Properties"]["RetentionInDays"] == 30


def test_the_listener_is_http_and_its_default_action_is_production(s):
    service_id, _ = only(s, "AWS::VpcLattice::Service")
    _, listener = only(s, "AWS::VpcLattice::Listener")
    props = listener["Properties"]
    assert (props["Protocol"], props["Port"]) == ("HTTP", LATTICE_LISTENER_PORT)
    assert props["ServiceIdentifier"] == {"Fn::GetAtt": [service_id, "Id"]}
    (default,) = props["DefaultAction"]["Forward"]["TargetGroups"]
    assert version_of_target_group(s, ref_name(default["TargetGroupIdentifier"])) == "Production"


def test_rules_header_first_then_the_split_every_path_on_the_one_listener(s):
    listener_id, _ = only(s, "AWS::VpcLattice::Listener")
    rules = sorted(
        (r["Properties"] for r in s.resources("AWS::VpcLattice::Rule").values()), key=lambda r: r["Priority"]
    )
    assert [r["Priority"] for r in rules] == [10, 20]  # Lattice priorities are 1 to 100
    for rule in rules:
        assert rule["ListenerIdentifier"] == {"Fn::GetAtt": [listener_id, "Id"]}
    header, weighted = rules
    assert header["Match"] == {"HttpMatch": {"HeaderMatches": [{"Match": {"Exact": "true"}, "Name": CANARY_HEADER}]}}
    (canary,) = header["Action"]["Forward"]["TargetGroups"]
    assert version_of_target_group(s, ref_name(canary["TargetGroupIdentifier"])) == "Canary"
    assert weighted["Match"] == {"HttpMatch": {"PathMatch": {"Match": {"Prefix": "/"}}}}


# --- target groups and how the tasks get into them -------------------------------------------------


def test_two_ip_target_groups_check_the_app_on_health(s):
    groups = s.resources("AWS::VpcLattice::TargetGroup")
    assert len(groups) == 2
    (vpc,) = s.resources("AWS::EC2::VPC")
    for group in groups.values():
        props = group["Properties"]
        assert props["Type"] == "IP"  # ECS registers each task's IP address
        config = props["Config"]
        assert (config["Port"], config["Protocol"], config["ProtocolVersion"]) == (APP_PORT, "HTTP", "HTTP1")
        assert config["VpcIdentifier"] == {"Ref": vpc}
        check = config["HealthCheck"]
        assert check["Enabled"] is True
        assert (check["Path"], check["Port"], check["Matcher"]) == (HEALTH_PATH, APP_PORT, {"HttpCode": "200"})
        # Lattice's ranges: interval 5-300 s, timeout 1-120 s, thresholds 2-10
        # (https://docs.aws.amazon.com/vpc-lattice/latest/ug/target-group-health-checks.html).
        assert check["HealthCheckIntervalSeconds"] > check["HealthCheckTimeoutSeconds"] >= 1
        assert (check["HealthyThresholdCount"], check["UnhealthyThresholdCount"]) == (2, 3)


@pytest.mark.parametrize("version", ["Production", "Canary"])
def test_each_ecs_service_registers_its_app_port_in_its_own_target_group(s, version):
    _, service = versions_service(s, version)
    (config,) = service["Properties"]["VpcLatticeConfigurations"]
    assert version_of_target_group(s, ref_name(config["TargetGroupArn"])) == version
    assert config["TargetGroupArn"]["Fn::GetAtt"][1] == "Arn"
    # PortName is a port mapping's name in the task definition: the app's port.
    task = resource(s, ref_name(service["Properties"]["TaskDefinition"]))["Properties"]
    (mapping,) = container(task, "app")["PortMappings"]
    assert (config["PortName"], mapping["Name"], mapping["ContainerPort"]) == (APP_PORT_NAME, "http", APP_PORT)
    role = resource(s, ref_name(config["RoleArn"]))
    assert role["Type"] == "AWS::IAM::Role"
    assert service["Properties"].get("LoadBalancers", []) == []  # Lattice, not the load balancer, reaches them


def test_the_ecs_infrastructure_role_is_ecs_with_awss_lattice_policy_only(s):
    _, service = versions_service(s, "Canary")
    (config,) = service["Properties"]["VpcLatticeConfigurations"]
    role = resource(s, ref_name(config["RoleArn"]))["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": ECS_PRINCIPAL}}
    ]
    assert ECS_PRINCIPAL == "ecs.amazonaws.com"
    assert role["ManagedPolicyArns"] == [
        {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, f":iam::aws:policy/{ECS_LATTICE_POLICY}"]]}
    ]
    assert ECS_LATTICE_POLICY == "AmazonECSInfrastructureRolePolicyForVpcLattice"
    assert "Policies" not in role
    attached = [
        p
        for p in s.resources("AWS::IAM::Policy").values()
        if any(ref_name(r) == ref_name(config["RoleArn"]) for r in p["Properties"]["Roles"])
    ]
    assert attached == []


@pytest.mark.parametrize(
    "version, attachment", [("Production", "AWS::VpcLattice::Listener"), ("Canary", "AWS::VpcLattice::Rule")]
)
def test_a_version_starts_after_the_resource_that_puts_its_target_group_in_use(s, version, attachment):
    # A target group no Lattice service uses reports its targets UNUSED; the fixed attachments (the
    # listener's default action, the header rule) wait for no ECS service, so there is no cycle.
    name, service = versions_service(s, version)
    (config,) = service["Properties"]["VpcLatticeConfigurations"]
    group = ref_name(config["TargetGroupArn"])
    attachers = [
        k
        for k in service["DependsOn"]
        if resource(s, k)["Type"] == attachment and group in json.dumps(resource(s, k)["Properties"])
    ]
    assert len(attachers) == 1
    assert name not in resource(s, attachers[0]).get("DependsOn", [])


def test_the_fixed_attachments_wait_for_no_ecs_service(s):
    services = set(s.resources("AWS::ECS::Service"))
    weighted = [
        v
        for v in s.resources("AWS::VpcLattice::Rule").values()
        if len(v["Properties"]["Action"]["Forward"]["TargetGroups"]) == 2
    ]
    fixed = [*s.resources("AWS::VpcLattice::Listener").values()] + [
        v for v in s.resources("AWS::VpcLattice::Rule").values() if v not in weighted
    ]
    assert len(fixed) == 2
    for attachment in fixed:
        assert not services & set(attachment.get("DependsOn", []))


# --- the managed prefix list, looked up while deploying ---------------------------------------------


def test_the_versions_accept_the_app_port_from_the_regions_lattice_prefix_list_only(s):
    lookup_id, lookup = only(s, "Custom::AWS")
    for version in ("Production", "Canary"):
        _, service = versions_service(s, version)
        (group,) = service["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"]
        group_id = ref_name(group)
        assert "SecurityGroupIngress" not in resource(s, group_id)["Properties"]
        rules = [
            r["Properties"]
            for r in s.resources("AWS::EC2::SecurityGroupIngress").values()
            if ref_name(r["Properties"]["GroupId"]) == group_id
        ]
        assert [(r["IpProtocol"], r["FromPort"], r["ToPort"], r["SourcePrefixListId"]) for r in rules] == [
            ("tcp", APP_PORT, APP_PORT, {"Fn::GetAtt": [lookup_id, "PrefixLists.0.PrefixListId"]})
        ]


def test_the_prefix_list_is_found_by_its_documented_name_in_the_deploying_region(s):
    _, lookup = only(s, "Custom::AWS")
    props = lookup["Properties"]
    assert props["InstallLatestAwsSdk"] is False  # no npm install at deploy time
    for phase in ("Create", "Update"):
        call = json.loads(evaluate_join(props[phase], "eu-west-1"))
        # https://docs.aws.amazon.com/vpc-lattice/latest/ug/security-groups.html (the list's name),
        # https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeManagedPrefixLists.html (the filter).
        assert (call["service"], call["action"]) == ("EC2", "describeManagedPrefixLists")
        assert call["parameters"] == {
            "Filters": [{"Name": "prefix-list-name", "Values": ["com.amazonaws.eu-west-1.vpc-lattice"]}]
        }
        assert call["outputPaths"] == ["PrefixLists.0.PrefixListId"]
        assert json.loads(evaluate_join(props[phase], "us-west-2"))["parameters"]["Filters"][0]["Values"] == [
            "com.amazonaws.us-west-2.vpc-lattice"
        ]
    assert "Delete" not in props


def test_the_lookup_may_only_describe_managed_prefix_lists(s):
    lookup_id, lookup = only(s, "Custom::AWS")
    (policy,) = [s.template["Resources"][d] for d in lookup["DependsOn"]]
    assert policy["Type"] == "AWS::IAM::Policy"
    assert policy["Properties"]["PolicyDocument"]["Statement"] == [
        {"Action": "ec2:DescribeManagedPrefixLists", "Effect": "Allow", "Resource": "*"}
    ]


# --- the ingress proxy -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def proxy(s) -> tuple[str, dict, dict]:
    """(service logical id, service properties, task definition properties) of the proxy."""
    (name,) = [k for k in s.resources("AWS::ECS::Service") if k.startswith("RouterProxy")]
    service = resource(s, name)["Properties"]
    return name, service, resource(s, ref_name(service["TaskDefinition"]))["Properties"]


def test_the_load_balancer_forwards_to_the_proxy_only(s, proxy):
    _, service, _ = proxy
    (lb,) = service["LoadBalancers"]
    assert (lb["ContainerName"], lb["ContainerPort"]) == (PROXY_CONTAINER, LATTICE_PROXY_PORT)
    group = resource(s, ref_name(lb["TargetGroupArn"]))["Properties"]
    assert (group["Port"], group["Protocol"], group["TargetType"]) == (LATTICE_PROXY_PORT, "HTTP", "ip")
    # nginx's own answer, never a request through Lattice (nginx.conf).
    assert group["HealthCheckPath"] == LATTICE_PROXY_HEALTH_PATH
    (listener,) = s.resources("AWS::ElasticLoadBalancingV2::Listener").values()
    (default,) = listener["Properties"]["DefaultActions"]
    assert ref_name(default["TargetGroupArn"]) == ref_name(lb["TargetGroupArn"])
    assert not s.resources("AWS::ElasticLoadBalancingV2::ListenerRule")


def test_the_proxy_is_hardened_like_the_app(proxy):
    _, _, task = proxy
    (nginx,) = task["ContainerDefinitions"]
    assert nginx["Name"] == PROXY_CONTAINER
    assert nginx["User"] == f"{LATTICE_PROXY_UID}:{LATTICE_PROXY_UID}" == "101:101"
    assert nginx["ReadonlyRootFilesystem"] is True
    assert nginx["LinuxParameters"]["Capabilities"] == {"Drop": ["ALL"]}
    # Writable: the one scratch volume, nothing else.
    assert nginx["MountPoints"] == [{"ContainerPath": SCRATCH_PATH, "ReadOnly": False, "SourceVolume": "tmp"}]
    assert task["Volumes"] == [{"Name": "tmp"}]
    assert nginx["PortMappings"] == [{"ContainerPort": LATTICE_PROXY_PORT, "Name": "http", "Protocol": "tcp"}]
    assert nginx["HealthCheck"]["Command"] == [
        "CMD",
        "curl",
        "-fsS",
        "-o",
        "/dev/null",
        f"http://127.0.0.1:{LATTICE_PROXY_PORT}{LATTICE_PROXY_HEALTH_PATH}",
    ]
    assert "Environment" not in nginx and "Secrets" not in nginx


def test_the_proxy_accepts_its_port_from_the_load_balancer_only(s, proxy):
    _, service, _ = proxy
    (group,) = service["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"]
    rules = [
        r["Properties"]
        for r in s.resources("AWS::EC2::SecurityGroupIngress").values()
        if ref_name(r["Properties"]["GroupId"]) == ref_name(group)
    ]
    (lb,) = s.resources("AWS::ElasticLoadBalancingV2::LoadBalancer").values()
    assert [(ref_name(r["SourceSecurityGroupId"]), r["FromPort"], r["ToPort"]) for r in rules] == [
        (ref_name(lb["Properties"]["SecurityGroups"][0]), LATTICE_PROXY_PORT, LATTICE_PROXY_PORT)
    ]


def test_the_proxy_image_is_built_from_its_folder_for_the_tasks_cpu(s, proxy):
    _, _, task = proxy
    (nginx,) = task["ContainerDefinitions"]
    asset_hash = nginx["Image"]["Fn::Sub"].rsplit(":", 1)[1]
    assets = json.loads((s.outdir / "CrystalCanary.assets.json").read_text())["dockerImages"]
    source = assets[asset_hash]["source"]
    assert source["platform"] == "linux/amd64" and task["RuntimePlatform"]["CpuArchitecture"] == "X86_64"
    staged = s.outdir / source["directory"]
    assert sorted(p.name for p in staged.iterdir()) == sorted(p.name for p in LATTICE_PROXY_DIR.iterdir())
    assert (staged / "nginx.conf").read_bytes() == (LATTICE_PROXY_DIR / "nginx.conf").read_bytes()


def test_on_graviton_the_proxy_runs_and_is_built_for_arm64_like_the_versions(tmp_path):
    # The proxy takes its CPU from the versions' task definitions (cpuArchitecture). A small stack
    # with just what the proxy needs, not the whole app: one more full synthesis costs seconds.
    from aws_cdk import Stack  # after `app`, which sets up the toolchain aws_cdk starts with
    from aws_cdk import aws_ecs as ecs

    app = cdk_app.create_app(outdir=str(tmp_path))
    stack = Stack(app, "Graviton")
    network = Network(stack, "Network")
    entrypoint = PublicEntrypoint(stack, "Entrypoint", vpc=network.vpc, allowed_cidr="0.0.0.0/0")
    version = CrystalService(
        stack,
        "Production",
        cluster=network.cluster,
        version="production",
        image=ecs.ContainerImage.from_registry("public.ecr.aws/example/crystal:1"),
        cpu_architecture=ecs.CpuArchitecture.ARM64,
    )
    assert cpu_architecture_of(version) == "arm64"
    LatticeProxy(stack, "Proxy", cluster=network.cluster, entrypoint=entrypoint, cpu_architecture="arm64")
    assembly = app.synth()
    template = assembly.get_stack_by_name("Graviton").template
    (task,) = [
        v["Properties"]
        for k, v in template["Resources"].items()
        if k.startswith("ProxyTask") and v["Type"] == "AWS::ECS::TaskDefinition"
    ]
    assert task["RuntimePlatform"]["CpuArchitecture"] == "ARM64"
    (image,) = json.loads((tmp_path / "Graviton.assets.json").read_text())["dockerImages"].values()
    assert image["source"]["platform"] == "linux/arm64"


DOCKERFILE = (LATTICE_PROXY_DIR / "Dockerfile").read_text()
NGINX_CONF = (LATTICE_PROXY_DIR / "nginx.conf").read_text()


def directives(name: str) -> list[str]:
    """The arguments of every `name` directive in nginx.conf (comments left out)."""
    text = "\n".join(line.split("#", 1)[0] for line in NGINX_CONF.splitlines())
    return [m.strip() for m in re.findall(rf"(?:^|[{{;\s]){re.escape(name)}\s+([^;]*);", text, re.MULTILINE)]


def test_the_proxy_image_is_an_exact_nginx_release_from_ecr_public():
    (base,) = re.findall(r"^FROM\s+(\S+)\s*$", DOCKERFILE, re.MULTILINE)
    # Docker's official nginx image, through ECR Public's copy of Docker's official images; an exact
    # release (nginx:1.30.5-alpine, docker-library/repo-info repos/nginx/remote/1.30.5-alpine.md),
    # never a moving tag like stable or latest.
    assert re.fullmatch(r"public\.ecr\.aws/docker/library/nginx:\d+\.\d+\.\d+-alpine", base), base
    assert "RUN" not in re.findall(r"^(\w+)", DOCKERFILE, re.MULTILINE)  # builds for any CPU without emulation


def test_the_proxy_image_runs_nginx_as_the_tasks_user_with_tmp_as_its_only_volume():
    assert re.findall(r"^USER\s+(\S+)$", DOCKERFILE, re.MULTILINE) == [f"{LATTICE_PROXY_UID}:{LATTICE_PROXY_UID}"]
    # The VOLUME that names the task's mount path is what makes ECS copy the image's /tmp (mode 1777)
    # into the volume (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/bind-mounts.html).
    assert re.findall(r"^VOLUME\s+(.+)$", DOCKERFILE, re.MULTILINE) == [json.dumps([SCRATCH_PATH])]
    (entrypoint,) = re.findall(r"^ENTRYPOINT\s+(.+)$", DOCKERFILE, re.MULTILINE)
    assert json.loads(entrypoint) == ["nginx", "-e", "stderr", "-c", "/etc/nginx/nginx.conf"]
    assert "COPY nginx.conf /etc/nginx/nginx.conf" in DOCKERFILE.splitlines()


def test_nginx_conf_agrees_with_the_stack():
    assert directives("listen") == [str(LATTICE_PROXY_PORT)]
    assert f"location = {LATTICE_PROXY_HEALTH_PATH} " in NGINX_CONF
    assert directives("set") == [f"$lattice_service {VIRTUAL_SERVICE_NAME}:{LATTICE_LISTENER_PORT}"]
    assert directives("proxy_pass") == ["http://$lattice_service"]
    assert f"Host {VIRTUAL_SERVICE_NAME}" in directives("proxy_set_header")
    # The Amazon DNS server's fixed address (https://docs.aws.amazon.com/vpc/latest/userguide/AmazonDNS-concepts.html).
    assert directives("resolver")[0].split()[0] == "169.254.169.253"
    # Nothing written outside the scratch volume.
    writes = directives("pid") + [
        d for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi") for d in directives(f"{name}_temp_path")
    ]
    assert len(writes) == 6 and all(w.startswith(SCRATCH_PATH + "/") for w in writes), writes
    assert "user" not in {
        line.split()[0] for line in NGINX_CONF.splitlines() if line.strip() and not line.strip().startswith("#")
    }


# --- alarms and dashboard from Lattice's metrics ----------------------------------------------------


def lattice_metrics(node) -> list[dict]:
    """Every `Metric` of AWS/VpcLattice in a template fragment (an alarm's Metrics, a dashboard body)."""
    found = []
    if isinstance(node, dict):
        if node.get("Namespace") == METRICS_NAMESPACE:
            found.append(node)
        for value in node.values():
            found += lattice_metrics(value)
    elif isinstance(node, list):
        for value in node:
            found += lattice_metrics(value)
    return found


def test_the_canary_alarms_read_the_canarys_target_group_by_the_dimension_cloudwatch_publishes(s):
    # Lattice publishes per target group under the dimension `TargetGroup`
    # (https://docs.aws.amazon.com/vpc-lattice/latest/ug/monitoring-cloudwatch.html); its value is the
    # target group's ID, the attribute the alarms must read (Fn::GetAtt <group>.Id, not the ARN).
    alarms = {k: v["Properties"] for k, v in s.resources("AWS::CloudWatch::Alarm").items()}
    by_metric: dict[str, set[str]] = {}
    for name, alarm in alarms.items():
        for metric in lattice_metrics(alarm.get("Metrics", [])):
            (dimension,) = metric["Dimensions"]
            assert dimension["Name"] == TARGET_GROUP_DIMENSION == "TargetGroup"
            group, attribute = dimension["Value"]["Fn::GetAtt"]
            assert attribute == "Id"
            assert resource(s, group)["Type"] == "AWS::VpcLattice::TargetGroup"
            version = version_of_target_group(s, group)
            if not name.startswith("ObservabilityLatencyVsProduction"):
                assert version == "Canary", name
            by_metric.setdefault(metric["MetricName"], set()).add(version)
    assert by_metric == {
        REQUESTS_METRIC: {"Canary"},
        ERRORS_METRIC: {"Canary"},
        LATENCY_METRIC: {"Canary", "Production"},  # the vs-production alarm compares both
    }
    assert (REQUESTS_METRIC, ERRORS_METRIC, LATENCY_METRIC) == (
        "TotalRequestCount",
        "HTTPCode_5XX_Count",
        "RequestTime",
    )


def test_latency_is_converted_from_lattices_milliseconds_to_the_alarms_seconds(s):
    (alarm,) = [
        v["Properties"]
        for k, v in s.resources("AWS::CloudWatch::Alarm").items()
        if k.startswith("ObservabilityLatency") and "VsProduction" not in k
    ]
    (expression,) = [m for m in alarm["Metrics"] if m.get("ReturnData", True)]
    (ms,) = [m for m in alarm["Metrics"] if "MetricStat" in m]
    assert expression["Expression"] == f"{ms['Id']} / 1000"  # RequestTime is in milliseconds
    assert (ms["MetricStat"]["Metric"]["MetricName"], ms["MetricStat"]["Stat"]) == (LATENCY_METRIC, "p99")


def test_the_dashboard_shows_both_versions_from_their_own_target_groups(s):
    _, dashboard = only(s, "AWS::CloudWatch::Dashboard")
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    groups = {logical for logical, v in s.resources("AWS::VpcLattice::TargetGroup").items()}
    for group in groups:
        assert f'"{group}"' in body and body.count(METRICS_NAMESPACE) >= 6


def test_no_app_mesh_no_cloud_map_and_nothing_that_refuses_the_deploy(s):
    kinds = {v["Type"] for v in s.template["Resources"].values()}
    assert not [k for k in kinds if k.startswith(("AWS::AppMesh::", "AWS::ServiceDiscovery::"))]
    assert set(s.template.get("Rules", {})) <= {"CheckBootstrapVersion"}
    assert "AppMeshEndOfSupport" not in s.template.get("Parameters", {})
    assert "aws-appmesh-envoy" not in json.dumps(s.template)
