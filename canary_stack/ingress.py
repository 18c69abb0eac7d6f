"""The internet-facing load balancer: the one way in, open to `allowedCidr` only.

HTTP on port 80 by default. With an ACM certificate (`-c certificateArn=...`) requests are served
over HTTPS on 443 and port 80 answers with a permanent redirect to it; the routers attach to
whichever listener carries the traffic (`listener`).

A certificate covers a host name, not the load balancer's own DNS name, so it comes with one
(`-c domainName=...`): the `Url` is then `https://<domainName>`, which verify and the pipeline call
and the certificate covers. With `-c hostedZoneId=...` the stack adds a Route 53 alias record
<domainName> -> the load balancer in that zone; without it, point the name at the load balancer
yourself (the `LoadBalancerDnsName` output).
"""

from __future__ import annotations

from aws_cdk import Aws, CfnRule, CfnRuleAssertion, Duration, Fn
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as route53_targets
from constructs import Construct

from canary_stack.nag import acknowledge, skip_checkov

HTTP_PORT = 80
HTTPS_PORT = 443
# ELB's recommended policy (TLS 1.3 and 1.2, hybrid post-quantum key exchange), the console's default;
# CloudFormation's own default is ELBSecurityPolicy-2016-08, which still allows TLS 1.0.
# https://docs.aws.amazon.com/elasticloadbalancing/latest/application/describe-ssl-policies.html
TLS_POLICY = elbv2.SslPolicy.TLS13_12_RES_PQ  # ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09


# Every target group behind the load balancer (the versions with the ALB router, the App Mesh
# gateway, the Lattice proxy): two passes in 20 s take a new task into service, three failures in
# 30 s take it out (the workshop's App Mesh check, on the target itself).
# Long enough for in-flight requests of a replaced task; short enough that a rollback of the
# canary's tasks does not wait the default five minutes.
DEREGISTRATION_DELAY = Duration.seconds(30)


def target_health_check(path: str, *, port: int | None = None) -> elbv2.HealthCheck:
    """The load balancer's check of one target group: `path` answers 200 (on `port`, default the traffic port)."""
    return elbv2.HealthCheck(
        path=path,
        port=None if port is None else str(port),
        interval=Duration.seconds(10),
        timeout=Duration.seconds(5),
        healthy_threshold_count=2,
        unhealthy_threshold_count=3,
        healthy_http_codes="200",
    )


class PublicEntrypoint(Construct):
    """An ALB in the public subnets and the listener routers attach their targets to.

    `listener` carries the traffic: HTTPS on 443 with `certificate_arn`, else HTTP on 80.
    `redirect_listener` is the port-80 listener that redirects to HTTPS (None without a certificate).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        vpc: ec2.IVpc,
        allowed_cidr: str,
        certificate_arn: str | None = None,
        domain_name: str | None = None,
        hosted_zone_id: str | None = None,
    ) -> None:
        super().__init__(scope, id)
        if (certificate_arn is None) != (domain_name is None):
            raise ValueError("give certificate_arn and domain_name together (the name the certificate covers)")
        if hosted_zone_id is not None and domain_name is None:
            raise ValueError("hosted_zone_id needs domain_name: the record it would hold")
        self.domain_name = domain_name
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
            assert domain_name is not None
            self.certificate_region_rule = certificate_region_rule(self, certificate_arn)
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
            # The host the certificate covers: https://<load balancer DNS name> would fail every
            # TLS name check (verify, the pipeline's --url-from-stack, a browser).
            self.url = f"https://{domain_name}"
        self.alias_record: route53.ARecord | None = None
        if hosted_zone_id is not None:
            assert domain_name is not None
            # An alias A record (the load balancer is IPv4 only): Route 53 answers with the load
            # balancer's current addresses, which change; an alias also works at a zone's apex,
            # where a CNAME may not stand
            # (https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/resource-record-sets-choosing-alias-non-alias.html).
            # The zone is given by ID alone: the record's name is the full domainName with its final
            # dot, so CDK needs no zone name, and Route 53 refuses a name outside the zone at deploy.
            self.alias_record = route53.ARecord(
                self,
                "Alias",
                zone=route53.HostedZone.from_hosted_zone_id(self, "Zone", hosted_zone_id),
                record_name=f"{domain_name}.",
                target=route53.RecordTarget.from_alias(route53_targets.LoadBalancerTarget(self.load_balancer)),
            )

    def reach(self, tasks: ec2.SecurityGroup, port: int, *, inbound: str, outbound: str) -> None:
        """Lets the load balancer reach `port` on the tasks in `tasks` (a gateway or a proxy it
        forwards to): their ingress rule from it, and its own egress rule (it allows no other
        outbound traffic). `inbound` and `outbound` describe the two rules."""
        tasks.add_ingress_rule(self.security_group, ec2.Port.tcp(port), inbound)
        self.security_group.add_egress_rule(tasks, ec2.Port.tcp(port), outbound)

    def forward_to(
        self,
        scope: Construct,
        service: ecs.FargateService,
        *,
        container: str,
        port: int,
        health_check: elbv2.HealthCheck,
        action: str,
    ) -> elbv2.ApplicationTargetGroup:
        """Makes `port` of `container` in `service`'s tasks (a gateway or a proxy in front of the
        versions) the listener's default target: an IP target group owned by `scope` ("Targets"),
        HTTP, with `health_check` and the stack's deregistration delay. `action` names the
        listener's action. Returns the target group."""
        target_group = elbv2.ApplicationTargetGroup(
            scope,
            "Targets",
            vpc=service.cluster.vpc,
            port=port,
            protocol=elbv2.ApplicationProtocol.HTTP,
            target_type=elbv2.TargetType.IP,
            targets=[service.load_balancer_target(container_name=container, container_port=port)],
            health_check=health_check,
            deregistration_delay=DEREGISTRATION_DELAY,
        )
        self.listener.add_target_groups(action, target_groups=[target_group])
        return target_group


def certificate_region(certificate_arn: str) -> str:
    """arn:PARTITION:acm:REGION:ACCOUNT:certificate/ID -> REGION (config.py checked the form)."""
    return certificate_arn.split(":")[3]


def certificate_region_rule(scope: Construct, certificate_arn: str) -> CfnRule:
    """Stops a deploy to another region than the certificate's before anything is created.

    A load balancer takes certificates of its own region only; with another region's, CloudFormation
    would create the VPC, the cluster and the image copy first and fail (and roll back) on the
    listener. A Rule is checked when the change set is made: "All validations occur before
    CloudFormation creates or updates any resources"; its assertion may use Fn::Equals and Ref, a
    pseudo parameter's included (rule functions: Fn::And, Fn::Contains, Fn::EachMemberEquals,
    Fn::EachMemberIn, Fn::Equals, Fn::Not, Fn::Or, Fn::RefAll, Fn::ValueOf, Fn::ValueOfAll, with Ref
    inside: https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/intrinsic-function-reference-rules.html).
    The region is read from the ARN here, at synthesis: the app is region-agnostic, so only
    CloudFormation knows the stack's.
    """
    region = certificate_region(certificate_arn)
    return CfnRule(
        scope,
        "CertificateRegionRule",
        assertions=[
            CfnRuleAssertion(
                assert_=Fn.condition_equals(Aws.REGION, region),
                assert_description=f"certificateArn is a certificate of {region}: a load balancer takes "
                f"certificates of its own region only. Deploy to {region}, or give a certificate "
                "of this stack's region (request or import it in ACM there)",
            )
        ],
    )
