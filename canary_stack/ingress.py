"""The internet-facing load balancer: the one way in, open to `allowedCidr` only."""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from constructs import Construct

from canary_stack.nag import acknowledge

LISTENER_PORT = 80


class PublicEntrypoint(Construct):
    """An ALB in the public subnets and its HTTP listener; routers attach their targets to it."""

    def __init__(self, scope: Construct, id: str, *, vpc: ec2.IVpc, allowed_cidr: str) -> None:
        super().__init__(scope, id)
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="Public entrypoint of the Crystal canary",
            allow_all_outbound=False,
        )
        self.security_group.add_ingress_rule(
            ec2.Peer.ipv4(allowed_cidr), ec2.Port.tcp(LISTENER_PORT), f"HTTP from {allowed_cidr} (allowedCidr)"
        )
        self.load_balancer = elbv2.ApplicationLoadBalancer(
            self,
            "LoadBalancer",
            vpc=vpc,
            internet_facing=True,
            security_group=self.security_group,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            drop_invalid_header_fields=True,
        )
        # No access logs (yet): log delivery needs a bucket policy naming the region's ELB account,
        # and this stack is region-agnostic so that every machine synthesizes the same template.
        acknowledge(
            self.load_balancer,
            "AwsSolutions-ELB2",
            "Region-agnostic stack: ALB log delivery needs the region's ELB account in the bucket "
            "policy; request logs are kept by the targets (one access-log line per request)",
        )
        if allowed_cidr == "0.0.0.0/0":
            acknowledge(
                self.security_group,
                "AwsSolutions-EC23",
                "allowedCidr is 0.0.0.0/0, the default, because the workshop's endpoint is public; "
                "set -c allowedCidr=<your range> to close it (only port 80 is open either way)",
            )
        self.listener = self.load_balancer.add_listener(
            "Http", port=LISTENER_PORT, protocol=elbv2.ApplicationProtocol.HTTP, open=False
        )
        self.url = f"http://{self.load_balancer.load_balancer_dns_name}"
