"""One version of the service (canary_stack/service.py) on a bare Stack, without any router."""

from __future__ import annotations

import pytest
from aws_cdk import App, Stack, assertions
from aws_cdk import aws_ecs as ecs
from aws_cdk.assertions import Match
from crystal.support import final_stage_user

from canary_stack.constants import APP_PORT, CRYSTAL_SRC
from canary_stack.network import Network
from canary_stack.service import APP_USER, CrystalService


@pytest.fixture(scope="module")
def template() -> assertions.Template:
    stack = Stack(App(), "Bare")
    network = Network(stack, "Network")
    image = ecs.ContainerImage.from_registry("ecsdemo-crystal:test")
    CrystalService(stack, "Canary", cluster=network.cluster, version="canary", image=image)
    return assertions.Template.from_stack(stack)


def test_the_app_runs_alone_hardened_as_its_own_user_and_group(template):
    template.has_resource_properties(
        "AWS::ECS::TaskDefinition",
        {
            "ContainerDefinitions": [
                Match.object_like(
                    {
                        "Name": "app",
                        "User": "10001:10001",
                        "ReadonlyRootFilesystem": True,
                        "LinuxParameters": Match.object_like(
                            {"Capabilities": {"Drop": ["ALL"]}, "InitProcessEnabled": True}
                        ),
                        "PortMappings": [Match.object_like({"ContainerPort": APP_PORT})],
                        # The image has no shell: the binary checks itself.
                        "HealthCheck": Match.object_like({"Command": ["CMD", "/server", "--health-check"]}),
                    }
                )
            ],
            "ProxyConfiguration": Match.absent(),
        },
    )


def test_the_task_runs_the_app_as_the_user_its_image_names():
    # ECS enforces the image's own non-root user and group: the two must not drift apart.
    assert APP_USER == final_stage_user((CRYSTAL_SRC / "Dockerfile").read_text())


def test_the_service_is_private_and_rolls_back_a_failed_deployment(template):
    template.has_resource_properties(
        "AWS::ECS::Service",
        {
            "DesiredCount": 1,
            "LaunchType": "FARGATE",
            "NetworkConfiguration": {"AwsvpcConfiguration": Match.object_like({"AssignPublicIp": "DISABLED"})},
            "DeploymentConfiguration": Match.object_like(
                {
                    "DeploymentCircuitBreaker": {"Enable": True, "Rollback": True},
                    "MinimumHealthyPercent": 100,
                    "MaximumPercent": 200,
                }
            ),
        },
    )


def test_nothing_reaches_the_app_until_a_router_opens_its_port(template):
    (group,) = template.find_resources("AWS::EC2::SecurityGroup").values()
    assert "SecurityGroupIngress" not in group["Properties"]
    template.resource_count_is("AWS::EC2::SecurityGroupIngress", 0)
