"""Network: three AZs of public, private and isolated subnets; NAT; endpoints; SGs; flow logs."""

from __future__ import annotations

import ipaddress

from infra_support import policy

from infra_pulumi.offline import Evaluation

SUBNET = "aws:ec2/subnet:Subnet"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"


def _sg_id(ev: Evaluation, role: str) -> str:
    return f"network-{role}-sg-{ev.outputs['environment']}-id"


def test_vpc_spans_three_zones_with_three_tiers(test_env: Evaluation) -> None:
    subnets = test_env.of_type(SUBNET)
    tiers = {s.inputs["tags"]["Tier"] for s in subnets}
    assert tiers == {"public", "private", "isolated"}
    for tier in tiers:
        zones = [s.inputs["availabilityZone"] for s in subnets if s.inputs["tags"]["Tier"] == tier]
        assert sorted(zones) == ["us-east-1a", "us-east-1b", "us-east-1c"]
    vpc = ipaddress.ip_network(test_env.one("aws:ec2/vpc:Vpc").inputs["cidrBlock"])
    blocks = [ipaddress.ip_network(s.inputs["cidrBlock"]) for s in subnets]
    assert all(b.subnet_of(vpc) for b in blocks)  # type: ignore[arg-type]
    assert len(set(blocks)) == 9
    assert not any(s.inputs["mapPublicIpOnLaunch"] for s in subnets)
    assert test_env.outputs["privateSubnetIds"] == [
        f"network-private-us-east-1{z}-test-id" for z in "abc"
    ]


def test_isolated_subnets_have_no_route_out(test_env: Evaluation) -> None:
    isolated = test_env.named("network-isolated-rt-test")
    assert "routes" not in isolated.inputs or not isolated.inputs["routes"]
    public = test_env.named("network-public-rt-test")
    assert public.inputs["routes"][0]["gatewayId"] == "network-igw-test-id"


def test_s3_and_dynamodb_gateway_endpoints_serve_private_and_isolated_tables(
    test_env: Evaluation,
) -> None:
    endpoints = test_env.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    assert {e.inputs["serviceName"] for e in endpoints} == {
        "com.amazonaws.us-east-1.s3",
        "com.amazonaws.us-east-1.dynamodb",
    }
    for endpoint in endpoints:
        assert endpoint.inputs["vpcEndpointType"] == "Gateway"
        assert len(endpoint.inputs["routeTableIds"]) == 4


def test_security_groups_allow_only_the_documented_paths(prod_env: Evaluation) -> None:
    rules = {
        (
            r.inputs["securityGroupId"],
            r.inputs["fromPort"],
            r.inputs.get("referencedSecurityGroupId"),
            r.inputs.get("cidrIpv4"),
        )
        for r in prod_env.of_type(INGRESS)
    }
    alb, app, db = (_sg_id(prod_env, role) for role in ("alb", "app", "db"))
    dms, lam = _sg_id(prod_env, "dms"), _sg_id(prod_env, "lambda")
    assert rules == {
        (alb, 80, None, "0.0.0.0/0"),
        (alb, 443, None, "0.0.0.0/0"),
        (app, 8080, alb, None),
        (db, 5432, app, None),
        (db, 5432, dms, None),
        (db, 5432, lam, None),
    }
    egress = {
        (r.inputs["securityGroupId"], r.inputs["ipProtocol"]) for r in prod_env.of_type(EGRESS)
    }
    assert egress == {(alb, "tcp"), (app, "-1"), (dms, "-1"), (lam, "-1")}  # Aurora starts nothing
    names = {s.inputs["name"] for s in prod_env.of_type("aws:ec2/securityGroup:SecurityGroup")}
    assert names == {f"migctl-{role}-prod" for role in ("alb", "app", "db", "dms", "lambda")}


def test_flow_logs_go_to_a_log_group_with_retention(
    test_env: Evaluation, prod_env: Evaluation
) -> None:
    for ev, days in ((test_env, 14), (prod_env, 90)):
        env = ev.outputs["environment"]
        group = ev.named(f"network-flow-logs-{env}").inputs
        assert group["name"] == f"/migctl/{env}/vpc-flow-logs"
        assert group["retentionInDays"] == days
        flow = ev.one("aws:ec2/flowLog:FlowLog").inputs
        assert flow["trafficType"] == "ALL" and flow["vpcId"] == f"network-vpc-{env}-id"
        assert flow["logDestination"].endswith(f"/migctl/{env}/vpc-flow-logs")
        document = policy(ev.named(f"network-flow-logs-policy-{env}").inputs)
        assert document["Statement"][0]["Action"] == [  # type: ignore[index]
            "logs:CreateLogStream",
            "logs:PutLogEvents",
            "logs:DescribeLogStreams",
        ]
