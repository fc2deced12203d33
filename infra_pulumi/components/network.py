"""Network: a VPC over three AZs, NAT, gateway endpoints, security groups and flow logs.

Subnets come in three tiers per AZ: public (ALB, NAT), private (app, DMS,
validation Lambda; out through NAT) and isolated (Aurora; no route out).
Outside production one NAT gateway serves every AZ; production gets one per
AZ so that losing an AZ does not cut the others off (``natGateways``
overrides either default).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra_pulumi.components import assume_role_policy, policy_document

POSTGRES_PORT = 5432
ANYWHERE = "0.0.0.0/0"


@dataclass(frozen=True)
class NetworkArgs:
    environment: str
    region: str
    vpc_cidr: str
    availability_zones: Sequence[str]
    nat_per_az: bool
    app_port: int
    log_retention_days: int
    tags: Mapping[str, str]


class Network(pulumi.ComponentResource):
    """The VPC and everything the other components attach to."""

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("migctl:infra:Network", name, None, opts)
        self._name = name
        self._suffix = args.environment
        self._args = args
        child = pulumi.ResourceOptions(parent=self)

        self.vpc = aws.ec2.Vpc(
            self._n("vpc"),
            cidr_block=args.vpc_cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags=self._tags(self._n("vpc")),
            opts=child,
        )
        vpc_id = self.vpc.id
        gateway = aws.ec2.InternetGateway(
            self._n("igw"), vpc_id=vpc_id, tags=self._tags(self._n("igw")), opts=child
        )

        blocks = list(ipaddress.ip_network(args.vpc_cidr).subnets(prefixlen_diff=4))
        tiers: dict[str, list[aws.ec2.Subnet]] = {"public": [], "private": [], "isolated": []}
        for offset, tier in ((0, "public"), (4, "private"), (8, "isolated")):
            for index, zone in enumerate(args.availability_zones):
                subnet_name = self._n(f"{tier}-{zone}")
                tiers[tier].append(
                    aws.ec2.Subnet(
                        subnet_name,
                        vpc_id=vpc_id,
                        cidr_block=str(blocks[offset + index]),
                        availability_zone=zone,
                        map_public_ip_on_launch=False,
                        tags={**self._tags(subnet_name), "Tier": tier},
                        opts=child,
                    )
                )
        self.public_subnet_ids = [s.id for s in tiers["public"]]
        self.private_subnet_ids = [s.id for s in tiers["private"]]
        self.isolated_subnet_ids = [s.id for s in tiers["isolated"]]

        public_routes = aws.ec2.RouteTable(
            self._n("public-rt"),
            vpc_id=vpc_id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block=ANYWHERE, gateway_id=gateway.id)],
            tags=self._tags(self._n("public-rt")),
            opts=child,
        )
        self._associate("public", tiers["public"], [public_routes] * len(tiers["public"]))

        nat_zones = args.availability_zones if args.nat_per_az else args.availability_zones[:1]
        self.nat_gateways = [
            self._nat_gateway(zone, subnet)
            for zone, subnet in zip(nat_zones, tiers["public"], strict=False)
        ]
        private_routes = [
            aws.ec2.RouteTable(
                self._n(f"private-rt-{zone}"),
                vpc_id=vpc_id,
                routes=[
                    aws.ec2.RouteTableRouteArgs(
                        cidr_block=ANYWHERE,
                        nat_gateway_id=self.nat_gateways[index % len(self.nat_gateways)].id,
                    )
                ],
                tags=self._tags(self._n(f"private-rt-{zone}")),
                opts=child,
            )
            for index, zone in enumerate(args.availability_zones)
        ]
        self._associate("private", tiers["private"], private_routes)
        isolated_routes = aws.ec2.RouteTable(
            self._n("isolated-rt"),
            vpc_id=vpc_id,
            tags=self._tags(self._n("isolated-rt")),
            opts=child,
        )
        self._associate("isolated", tiers["isolated"], [isolated_routes] * len(tiers["isolated"]))

        # S3 and DynamoDB through gateway endpoints: free, and off the NAT's per-GB bill.
        route_table_ids = [rt.id for rt in [*private_routes, isolated_routes]]
        for service in ("s3", "dynamodb"):
            aws.ec2.VpcEndpoint(
                self._n(f"{service}-endpoint"),
                vpc_id=vpc_id,
                service_name=f"com.amazonaws.{args.region}.{service}",
                vpc_endpoint_type="Gateway",
                route_table_ids=route_table_ids,
                tags=self._tags(self._n(f"{service}-endpoint")),
                opts=child,
            )

        self._security_groups()
        self.flow_log_group = self._flow_logs()
        self.register_outputs(
            {
                "vpcId": vpc_id,
                "publicSubnetIds": self.public_subnet_ids,
                "privateSubnetIds": self.private_subnet_ids,
                "isolatedSubnetIds": self.isolated_subnet_ids,
                "natGatewayIds": [n.id for n in self.nat_gateways],
            }
        )

    def _n(self, part: str) -> str:
        """A child's logical name: component name, part, environment suffix."""
        return f"{self._name}-{part}-{self._suffix}"

    def _tags(self, name: str) -> dict[str, str]:
        return {**self._args.tags, "Name": name}

    def _associate(
        self, tier: str, subnets: Sequence[aws.ec2.Subnet], tables: Sequence[aws.ec2.RouteTable]
    ) -> None:
        for zone, subnet, table in zip(self._args.availability_zones, subnets, tables, strict=True):
            aws.ec2.RouteTableAssociation(
                self._n(f"{tier}-rta-{zone}"),
                subnet_id=subnet.id,
                route_table_id=table.id,
                opts=pulumi.ResourceOptions(parent=self),
            )

    def _nat_gateway(self, zone: str, subnet: aws.ec2.Subnet) -> aws.ec2.NatGateway:
        child = pulumi.ResourceOptions(parent=self)
        eip = aws.ec2.Eip(
            self._n(f"nat-eip-{zone}"),
            domain="vpc",
            tags=self._tags(self._n(f"nat-eip-{zone}")),
            opts=child,
        )
        return aws.ec2.NatGateway(
            self._n(f"nat-{zone}"),
            allocation_id=eip.id,
            subnet_id=subnet.id,
            connectivity_type="public",
            tags=self._tags(self._n(f"nat-{zone}")),
            opts=child,
        )

    def _security_groups(self) -> None:
        """ALB open on 80/443; app only from the ALB; database only from app, DMS and Lambda."""
        child = pulumi.ResourceOptions(parent=self)
        groups: dict[str, aws.ec2.SecurityGroup] = {}
        for role, description in (
            ("alb", "public load balancer"),
            ("app", "payment service tasks"),
            ("db", "Aurora PostgreSQL"),
            ("dms", "DMS replication instance"),
            ("lambda", "validation Lambda"),
        ):
            sg_name = self._n(f"{role}-sg")
            groups[role] = aws.ec2.SecurityGroup(
                sg_name,
                name=f"migctl-{role}-{self._suffix}",
                description=f"migctl {self._args.environment}: {description}",
                vpc_id=self.vpc.id,
                tags=self._tags(sg_name),
                opts=child,
            )
        self.alb_sg_id = groups["alb"].id
        self.app_sg_id = groups["app"].id
        self.db_sg_id = groups["db"].id
        self.dms_sg_id = groups["dms"].id
        self.lambda_sg_id = groups["lambda"].id

        for port in (80, 443):
            self._ingress("alb", groups["alb"], port, "world", cidr=ANYWHERE)
        self._ingress("app", groups["app"], self._args.app_port, "alb", source=groups["alb"])
        for peer in ("app", "dms", "lambda"):
            self._ingress("db", groups["db"], POSTGRES_PORT, peer, source=groups[peer])
        # The ALB only talks to the app; the others need the internet (ECR, Secrets
        # Manager, the on-prem source) through NAT. Aurora initiates nothing.
        self._egress("alb", groups["alb"], self._args.app_port, target=groups["app"])
        for role in ("app", "dms", "lambda"):
            aws.vpc.SecurityGroupEgressRule(
                self._n(f"{role}-egress-all"),
                security_group_id=groups[role].id,
                ip_protocol="-1",
                cidr_ipv4=ANYWHERE,
                description="outbound through NAT",
                tags=self._args.tags,
                opts=child,
            )

    def _ingress(
        self,
        role: str,
        group: aws.ec2.SecurityGroup,
        port: int,
        peer: str,
        *,
        cidr: str | None = None,
        source: aws.ec2.SecurityGroup | None = None,
    ) -> None:
        aws.vpc.SecurityGroupIngressRule(
            self._n(f"{role}-from-{peer}-{port}"),
            security_group_id=group.id,
            ip_protocol="tcp",
            from_port=port,
            to_port=port,
            cidr_ipv4=cidr,
            referenced_security_group_id=None if source is None else source.id,
            description=f"{port} from {peer}",
            tags=self._args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _egress(
        self, role: str, group: aws.ec2.SecurityGroup, port: int, *, target: aws.ec2.SecurityGroup
    ) -> None:
        aws.vpc.SecurityGroupEgressRule(
            self._n(f"{role}-to-app-{port}"),
            security_group_id=group.id,
            ip_protocol="tcp",
            from_port=port,
            to_port=port,
            referenced_security_group_id=target.id,
            description=f"{port} to the app",
            tags=self._args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _flow_logs(self) -> aws.cloudwatch.LogGroup:
        child = pulumi.ResourceOptions(parent=self)
        group = aws.cloudwatch.LogGroup(
            self._n("flow-logs"),
            name=f"/migctl/{self._args.environment}/vpc-flow-logs",
            retention_in_days=self._args.log_retention_days,
            tags=self._args.tags,
            opts=child,
        )
        role = aws.iam.Role(
            self._n("flow-logs-role"),
            name=f"migctl-flow-logs-{self._args.environment}",
            assume_role_policy=assume_role_policy("vpc-flow-logs.amazonaws.com"),
            tags=self._args.tags,
            opts=child,
        )
        aws.iam.RolePolicy(
            self._n("flow-logs-policy"),
            role=role.id,
            policy=group.arn.apply(
                lambda arn: policy_document(
                    [
                        {
                            "Effect": "Allow",
                            "Action": [
                                "logs:CreateLogStream",
                                "logs:PutLogEvents",
                                "logs:DescribeLogStreams",
                            ],
                            "Resource": [arn, f"{arn}:*"],
                        }
                    ]
                )
            ),
            opts=child,
        )
        aws.ec2.FlowLog(
            self._n("flow-log"),
            vpc_id=self.vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=group.arn,
            iam_role_arn=role.arn,
            tags=self._args.tags,
            opts=child,
        )
        return group
