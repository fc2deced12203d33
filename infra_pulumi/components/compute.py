"""Compute: the payment service on ECS Fargate behind an Application Load Balancer.

The image is whatever ``containerImage`` says; there is no placeholder. The
database credentials reach the container through the task definition's
``secrets`` (ECS reads them from Secrets Manager at start), never as plain
environment variables. The service rolls back on its own when the circuit
breaker trips or a deployment alarm fires.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra_pulumi.components import assume_role_policy, json_output, policy_document

TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
EXECUTION_POLICY_ARN = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"


@dataclass(frozen=True)
class ComputeArgs:
    environment: str
    is_production: bool
    region: str
    vpc_id: pulumi.Input[str]
    public_subnet_ids: Sequence[pulumi.Input[str]]
    private_subnet_ids: Sequence[pulumi.Input[str]]
    alb_security_group_id: pulumi.Input[str]
    app_security_group_id: pulumi.Input[str]
    image: str
    container_name: str
    container_port: int
    cpu: int
    memory: int
    desired_count: int
    health_check_path: str
    certificate_arn: str | None
    db_secret_arn: pulumi.Input[str]
    db_kms_key_arn: pulumi.Input[str]
    db_host: pulumi.Input[str]
    db_port: pulumi.Input[int]
    db_name: str
    deployment_alarm_names: Sequence[str]
    log_retention_days: int
    tags: Mapping[str, str]


class Compute(pulumi.ComponentResource):
    """ECS cluster, task definition, service, ALB, target group and listeners."""

    def __init__(
        self, name: str, args: ComputeArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("migctl:infra:Compute", name, None, opts)
        env = args.environment
        child = pulumi.ResourceOptions(parent=self)

        self.cluster = aws.ecs.Cluster(
            f"{name}-cluster-{env}",
            name=f"migctl-{env}",
            settings=[aws.ecs.ClusterSettingArgs(name="containerInsights", value="enabled")],
            tags=args.tags,
            opts=child,
        )
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs-{env}",
            name=f"/migctl/{env}/app",
            retention_in_days=args.log_retention_days,
            tags=args.tags,
            opts=child,
        )
        execution_role = aws.iam.Role(
            f"{name}-execution-role-{env}",
            name=f"migctl-app-execution-{env}",
            assume_role_policy=assume_role_policy("ecs-tasks.amazonaws.com"),
            tags=args.tags,
            opts=child,
        )
        aws.iam.RolePolicyAttachment(
            f"{name}-execution-managed-{env}",
            role=execution_role.name,
            policy_arn=EXECUTION_POLICY_ARN,
            opts=child,
        )
        # ECS (not the app) reads the database secret to fill the container's secrets.
        aws.iam.RolePolicy(
            f"{name}-execution-secret-{env}",
            role=execution_role.id,
            policy=pulumi.Output.all(args.db_secret_arn, args.db_kms_key_arn).apply(
                lambda arns: policy_document(
                    [
                        {
                            "Effect": "Allow",
                            "Action": "secretsmanager:GetSecretValue",
                            "Resource": [arns[0]],
                        },
                        {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": [arns[1]]},
                    ]
                )
            ),
            opts=child,
        )
        task_role = aws.iam.Role(
            f"{name}-task-role-{env}",
            name=f"migctl-app-task-{env}",
            assume_role_policy=assume_role_policy("ecs-tasks.amazonaws.com"),
            tags=args.tags,
            opts=child,
        )
        container = {
            "name": args.container_name,
            "image": args.image,
            "essential": True,
            "portMappings": [{"containerPort": args.container_port, "protocol": "tcp"}],
            "environment": [
                {"name": "DB_HOST", "value": args.db_host},
                {"name": "DB_PORT", "value": pulumi.Output.from_input(args.db_port).apply(str)},
                {"name": "DB_NAME", "value": args.db_name},
            ],
            "secrets": [
                {
                    "name": "DB_USERNAME",
                    "valueFrom": pulumi.Output.concat(args.db_secret_arn, ":username::"),
                },
                {
                    "name": "DB_PASSWORD",
                    "valueFrom": pulumi.Output.concat(args.db_secret_arn, ":password::"),
                },
            ],
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": log_group.name,
                    "awslogs-region": args.region,
                    "awslogs-stream-prefix": "app",
                },
            },
        }
        self.task_definition = aws.ecs.TaskDefinition(
            f"{name}-task-{env}",
            family=f"migctl-app-{env}",
            requires_compatibilities=["FARGATE"],
            network_mode="awsvpc",
            cpu=str(args.cpu),
            memory=str(args.memory),
            runtime_platform=aws.ecs.TaskDefinitionRuntimePlatformArgs(
                operating_system_family="LINUX", cpu_architecture="X86_64"
            ),
            execution_role_arn=execution_role.arn,
            task_role_arn=task_role.arn,
            container_definitions=json_output([container]),
            tags=args.tags,
            opts=child,
        )

        self.load_balancer = aws.lb.LoadBalancer(
            f"{name}-alb-{env}",
            name=f"migctl-alb-{env}",
            load_balancer_type="application",
            internal=False,
            security_groups=[args.alb_security_group_id],
            subnets=args.public_subnet_ids,
            drop_invalid_header_fields=True,
            enable_deletion_protection=args.is_production,
            tags=args.tags,
            opts=child,
        )
        self.target_group = self._target_group(f"{name}-tg-{env}", f"migctl-app-{env}", args)
        # The cutover's standby (docs/runbook.md, "No task start inside the window"): its own
        # target group, where the listener forwards while the new image serves from it.
        self.standby_target_group = self._target_group(
            f"{name}-tg-standby-{env}", f"migctl-standby-{env}", args
        )
        listener = self._listeners(name, args)

        self.service = self._service(
            f"{name}-service-{env}",
            f"migctl-app-{env}",
            args,
            self.target_group,
            args.desired_count,
            listener,
        )
        # Idle (0 tasks) outside a cutover; its revision and count belong to `migctl cutover`.
        self.standby_service = self._service(
            f"{name}-standby-{env}",
            f"migctl-standby-{env}",
            args,
            self.standby_target_group,
            0,
            listener,
            ignore=("taskDefinition", "desiredCount"),
        )
        self.listener_arn: pulumi.Output[str] = listener.arn
        self.cluster_name: pulumi.Output[str] = self.cluster.name
        self.service_name: pulumi.Output[str] = self.service.name
        self.container_name = args.container_name
        self.alb_dns_name: pulumi.Output[str] = self.load_balancer.dns_name
        self.alb_arn_suffix: pulumi.Output[str] = self.load_balancer.arn_suffix
        self.target_group_arn_suffix: pulumi.Output[str] = self.target_group.arn_suffix
        self.standby_service_name: pulumi.Output[str] = self.standby_service.name
        self.register_outputs(
            {
                "standbyServiceName": self.standby_service_name,
                "listenerArn": self.listener_arn,
                "clusterName": self.cluster_name,
                "serviceName": self.service_name,
                "albDnsName": self.alb_dns_name,
                "albArnSuffix": self.alb_arn_suffix,
                "targetGroupArnSuffix": self.target_group_arn_suffix,
            }
        )

    def _target_group(self, logical: str, physical: str, args: ComputeArgs) -> aws.lb.TargetGroup:
        child = pulumi.ResourceOptions(parent=self)
        return aws.lb.TargetGroup(
            logical,
            name=physical,
            port=args.container_port,
            protocol="HTTP",
            target_type="ip",
            vpc_id=args.vpc_id,
            deregistration_delay=30,
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                path=args.health_check_path,
                matcher="200-399",
                interval=15,
                timeout=5,
                healthy_threshold=2,
                unhealthy_threshold=3,
            ),
            tags=args.tags,
            opts=child,
        )

    def _service(
        self,
        logical: str,
        physical: str,
        args: ComputeArgs,
        group: aws.lb.TargetGroup,
        desired_count: int,
        listener: aws.lb.Listener,
        ignore: tuple[str, ...] = ("taskDefinition",),
    ) -> aws.ecs.Service:
        return aws.ecs.Service(
            logical,
            name=physical,
            cluster=self.cluster.arn,
            task_definition=self.task_definition.arn,
            desired_count=desired_count,
            launch_type="FARGATE",
            platform_version="LATEST",
            network_configuration=aws.ecs.ServiceNetworkConfigurationArgs(
                subnets=args.private_subnet_ids,
                security_groups=[args.app_security_group_id],
                assign_public_ip=False,
            ),
            load_balancers=[
                aws.ecs.ServiceLoadBalancerArgs(
                    target_group_arn=group.arn,
                    container_name=args.container_name,
                    container_port=args.container_port,
                )
            ],
            deployment_circuit_breaker=aws.ecs.ServiceDeploymentCircuitBreakerArgs(
                enable=True, rollback=True
            ),
            alarms=aws.ecs.ServiceAlarmsArgs(
                alarm_names=list(args.deployment_alarm_names), enable=True, rollback=True
            ),
            deployment_minimum_healthy_percent=100,
            deployment_maximum_percent=200,
            health_check_grace_period_seconds=60,
            propagate_tags="SERVICE",
            enable_ecs_managed_tags=True,
            tags=args.tags,
            # Once the service exists, the revision it runs belongs to `migctl rollout` (baked,
            # undoable): an update of the stack never puts the program's image back.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[listener], ignore_changes=list(ignore)
            ),
        )

    def _listeners(self, name: str, args: ComputeArgs) -> aws.lb.Listener:
        """HTTPS with a certificate (HTTP redirects to it); plain HTTP without, and a warning."""
        env = args.environment
        child = pulumi.ResourceOptions(parent=self)
        # Where it forwards belongs to `migctl cutover` (the standby switch): an update of the
        # stack never switches the traffic back under a cutover.
        switched = pulumi.ResourceOptions(parent=self, ignore_changes=["defaultActions"])
        forward = aws.lb.ListenerDefaultActionArgs(
            type="forward", target_group_arn=self.target_group.arn
        )
        if args.certificate_arn is None:
            pulumi.log.warn(
                f"migctl:certificateArn is not set: the {env} load balancer serves plain HTTP "
                "on port 80; set a certificate ARN to serve HTTPS"
            )
            return aws.lb.Listener(
                f"{name}-http-{env}",
                load_balancer_arn=self.load_balancer.arn,
                port=80,
                protocol="HTTP",
                default_actions=[forward],
                tags=args.tags,
                opts=switched,
            )
        aws.lb.Listener(
            f"{name}-http-redirect-{env}",
            load_balancer_arn=self.load_balancer.arn,
            port=80,
            protocol="HTTP",
            default_actions=[
                aws.lb.ListenerDefaultActionArgs(
                    type="redirect",
                    redirect=aws.lb.ListenerDefaultActionRedirectArgs(
                        port="443", protocol="HTTPS", status_code="HTTP_301"
                    ),
                )
            ],
            tags=args.tags,
            opts=child,
        )
        return aws.lb.Listener(
            f"{name}-https-{env}",
            load_balancer_arn=self.load_balancer.arn,
            port=443,
            protocol="HTTPS",
            ssl_policy=TLS_POLICY,
            certificate_arn=args.certificate_arn,
            default_actions=[forward],
            tags=args.tags,
            opts=switched,
        )
