"""The internet-facing load balancer: the one way in, open to `allowedCidr` only.

HTTP on port 80 by default. With an ACM certificate (`-c certificateArn=...`) requests are served
over HTTPS on 443 and port 80 answers with a permanent redirect to it; the routers attach to
whichever listener carries the traffic (`listener`).
"""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from constructs import Construct

from canary_stack.nag import acknowledge, skip_checkov

HTTP_PORT = 80
HTTPS_PORT = 443
# ELB's recommended policy (TLS 1.3 and 1.2, hybrid post-quantum key exchange), the console's default;
# CloudFormation's own default is ELBSecurityPolicy-2016-08, which still allows TLS 1.0.
# https://docs.aws.amazon.com/elasticloadbalancing/latest/application/describe-ssl-policies.html
TLS_POLICY = elbv2.SslPolicy.TLS13_12_RES_PQ  # ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09


class PublicEntrypoint(Construct):
    """An ALB in the public subnets and the listener routers attach their targets to.

    `listener` carries the traffic: HTTPS on 443 with `certificate_arn`, else HTTP on 80.
    `redirect_listener` is the port-80 listener that redirects to HTTPS (None without a certificate).
    """

    def __init__(
        self, scope: Construct, id: str, *, vpc: ec2.IVpc, allowed_cidr: str, certificate_arn: str | None = None
    ) -> None:
        super().__init__(scope, id)
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="Public entrypoint of the Crystal canary",
            allow_all_outbound=False,
        )
        self.security_group.add_ingress_rule(
            ec2.Peer.ipv4(allowed_cidr),
            ec2.Port.tcp(HTTP_PORT),
            f"HTTP from {allowed_cidr} (allowedCidr)"
            if certificate_arn is None
            else f"HTTP from {allowed_cidr} (allowedCidr), redirected to HTTPS",
        )
        if certificate_arn is not None:
            self.security_group.add_ingress_rule(
                ec2.Peer.ipv4(allowed_cidr), ec2.Port.tcp(HTTPS_PORT), f"HTTPS from {allowed_cidr} (allowedCidr)"
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
        skip_checkov(
            self.load_balancer,
            "CKV_AWS_91",
            "Region-agnostic stack: ALB log delivery needs the region's ELB account in the bucket policy; "
            "the targets log one access-log line per request",
        )
        if allowed_cidr == "0.0.0.0/0":
            acknowledge(
                self.security_group,
                "AwsSolutions-EC23",
                "allowedCidr is 0.0.0.0/0, the default, because the workshop's endpoint is public; "
                "set -c allowedCidr=<your range> to close it (only ports 80 and 443 are open either way)",
            )
            skip_checkov(
                self.security_group,
                "CKV_AWS_260",
                "allowedCidr is 0.0.0.0/0, the default: the workshop's endpoint is public "
                "(port 80 redirects to HTTPS when a certificate is given); -c allowedCidr=<range> closes it",
            )
        self.redirect_listener: elbv2.ApplicationListener | None = None
        if certificate_arn is None:
            self.listener = self.load_balancer.add_listener(
                "Http", port=HTTP_PORT, protocol=elbv2.ApplicationProtocol.HTTP, open=False
            )
            self.url = f"http://{self.load_balancer.load_balancer_dns_name}"
            for check in ("CKV_AWS_2", "CKV_AWS_103"):
                skip_checkov(
                    self.listener,
                    check,
                    "No certificate given: plain HTTP is the workshop's setup; -c certificateArn=<ACM ARN> "
                    "serves HTTPS on 443 and redirects port 80 to it",
                )
        else:
            self.listener = self.load_balancer.add_listener(
                "Https",
                port=HTTPS_PORT,
                protocol=elbv2.ApplicationProtocol.HTTPS,
                certificates=[elbv2.ListenerCertificate.from_arn(certificate_arn)],
                ssl_policy=TLS_POLICY,
                open=False,
            )
            # 301, so that browsers and clients remember to use HTTPS.
            self.redirect_listener = self.load_balancer.add_listener(
                "HttpRedirect",
                port=HTTP_PORT,
                protocol=elbv2.ApplicationProtocol.HTTP,
                open=False,
                default_action=elbv2.ListenerAction.redirect(protocol="HTTPS", port=str(HTTPS_PORT), permanent=True),
            )
            # The certificate names the host users type (a DNS record pointing at this load
            # balancer); the load balancer's own name is what the stack knows.
            self.url = f"https://{self.load_balancer.load_balancer_dns_name}"
