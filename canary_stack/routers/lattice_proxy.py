"""The lattice router's parts outside Lattice itself: the ingress proxy behind the public load balancer,
and the deploy-time lookup of the region's Lattice managed prefix list.

An Application Load Balancer cannot target a Lattice service, so the load balancer forwards to a small
nginx service in the VPC that calls the Lattice service by its name (lattice_proxy_image/nginx.conf);
AWS's own answer for reaching Lattice from outside the VPC is such a proxy on Fargate.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import custom_resources as cr
from constructs import Construct

from canary_stack.config import CpuArchitecture
from canary_stack.constants import (
    LATTICE_PREFIX_LIST_NAME,
    LATTICE_PROXY_DIR,
    LATTICE_PROXY_HEALTH_PATH,
    LATTICE_PROXY_PORT,
    LATTICE_PROXY_UID,
)
from canary_stack.fargate import acknowledge_task_findings, no_capabilities, private_fargate_service
from canary_stack.image import PLATFORMS
from canary_stack.ingress import PublicEntrypoint, target_health_check
from canary_stack.log_groups import log_group
from canary_stack.nag import acknowledge, skip_checkov_for_deploy_time_function

PROXY_CONTAINER = "nginx"
# The one path nginx writes (its pid file and temporary files); everything else is read-only.
SCRATCH_VOLUME, SCRATCH_PATH = "tmp", "/tmp"


class LatticeProxy(Construct):
    """nginx on Fargate, the public load balancer's only target: it passes every request, headers
    included, to the Lattice service. `security_group` is the tasks'; `target_group` the load
    balancer's; `service` the ECS service.

    `cpu_architecture`: the tasks' CPU, the same as the Crystal versions'; the image (FROM the
    pinned nginx image, plus nginx.conf) is built for it.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        cluster: ecs.ICluster,
        entrypoint: PublicEntrypoint,
        cpu_architecture: CpuArchitecture,
    ) -> None:
        super().__init__(scope, id)
        platform, task_cpu = PLATFORMS[cpu_architecture]
        self.log_group = log_group(self, "Logs")
        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "Task",
            cpu=256,
            memory_limit_mib=512,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=task_cpu, operating_system_family=ecs.OperatingSystemFamily.LINUX
            ),
        )
        self.container = self.task_definition.add_container(
            PROXY_CONTAINER,
            container_name=PROXY_CONTAINER,
            image=ecs.ContainerImage.from_asset(str(LATTICE_PROXY_DIR), platform=platform),
            essential=True,
            user=f"{LATTICE_PROXY_UID}:{LATTICE_PROXY_UID}",
            readonly_root_filesystem=True,
            linux_parameters=no_capabilities(self, "Linux"),
            port_mappings=[ecs.PortMapping(container_port=LATTICE_PROXY_PORT, name="http")],
            # nginx's own endpoint, with the curl the official alpine image installs.
            health_check=ecs.HealthCheck(
                command=[
                    "CMD",
                    "curl",
                    "-fsS",
                    "-o",
                    "/dev/null",
                    f"http://127.0.0.1:{LATTICE_PROXY_PORT}{LATTICE_PROXY_HEALTH_PATH}",
                ],
                interval=Duration.seconds(10),
                timeout=Duration.seconds(5),
                retries=3,
                start_period=Duration.seconds(10),
            ),
            logging=ecs.LogDriver.aws_logs(stream_prefix=PROXY_CONTAINER, log_group=self.log_group),
        )
        self.task_definition.add_volume(name=SCRATCH_VOLUME)
        self.container.add_mount_points(
            ecs.MountPoint(container_path=SCRATCH_PATH, source_volume=SCRATCH_VOLUME, read_only=False)
        )
        acknowledge_task_findings(self.task_definition, pulls_from_ecr=True)

        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=cluster.vpc, description="Lattice ingress proxy tasks", allow_all_outbound=True
        )
        entrypoint.reach(
            self.security_group,
            LATTICE_PROXY_PORT,
            inbound="From the public load balancer",
            outbound="To the Lattice ingress proxy",
        )
        self.service = private_fargate_service(
            self, cluster=cluster, task_definition=self.task_definition, security_group=self.security_group
        )
        # nginx itself, not a request through Lattice (see nginx.conf): the versions' health is
        # Lattice's own check on their target groups, and the canary alarms'.
        self.target_group = entrypoint.forward_to(
            self,
            self.service,
            container=PROXY_CONTAINER,
            port=LATTICE_PROXY_PORT,
            health_check=target_health_check(LATTICE_PROXY_HEALTH_PATH),
            action="LatticeProxy",
        )


class LatticePrefixList(Construct):
    """The ID of this region's managed prefix list `com.amazonaws.<region>.vpc-lattice`, the addresses
    Lattice sends requests and health checks from, looked up while CloudFormation deploys: the ID
    differs by region and account is not for the template to hard-code.

    AWS documents referencing the list in the targets' security groups
    (https://docs.aws.amazon.com/vpc-lattice/latest/ug/security-groups.html) and finding it by name
    with DescribeManagedPrefixLists and the `prefix-list-name` filter
    (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeManagedPrefixLists.html).
    `prefix_list_id` is the looked-up ID.
    """

    def __init__(self, scope: Construct, id: str) -> None:
        super().__init__(scope, id)
        name = LATTICE_PREFIX_LIST_NAME.format(region=Stack.of(self).region)
        lookup = cr.AwsSdkCall(
            service="EC2",
            action="describeManagedPrefixLists",
            parameters={"Filters": [{"Name": "prefix-list-name", "Values": [name]}]},
            # One list per region, looked up again on every update (a no-op unless AWS replaced it).
            physical_resource_id=cr.PhysicalResourceId.of("vpc-lattice-managed-prefix-list"),
            output_paths=["PrefixLists.0.PrefixListId"],
        )
        self.log_group = log_group(self, "Logs")
        self.lookup = cr.AwsCustomResource(
            self,
            "Lookup",
            on_create=lookup,
            on_update=lookup,
            # DescribeManagedPrefixLists has no resource-level permissions: "*" is the only resource
            # (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html).
            policy=cr.AwsCustomResourcePolicy.from_statements(
                [iam.PolicyStatement(actions=["ec2:DescribeManagedPrefixLists"], resources=["*"])]
            ),
            # The SDK that ships with Lambda's runtime: no npm install of the latest at deploy time.
            install_latest_aws_sdk=False,
            log_group=self.log_group,
            timeout=Duration.minutes(2),
        )
        self.prefix_list_id = self.lookup.get_response_field("PrefixLists.0.PrefixListId")
        acknowledge(
            self.lookup,
            "AwsSolutions-IAM5[Resource::*]",
            "ec2:DescribeManagedPrefixLists has no resource-level permissions; the lookup may call only that action",
        )
        self._acknowledge_provider()

    def _acknowledge_provider(self) -> None:
        """The stack-wide function behind every AwsCustomResource (CDK names it AWS<uuid without '-'>):
        CDK's own, run only while CloudFormation deploys."""
        function = Stack.of(self).node.find_child("AWS" + cr.AwsCustomResource.PROVIDER_FUNCTION_UUID.replace("-", ""))
        skip_checkov_for_deploy_time_function(function)
        acknowledge(
            function,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
            "CDK's AwsCustomResource provider: the basic execution policy only lets it write its own logs",
        )
