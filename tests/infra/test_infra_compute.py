"""Compute: ECS Fargate behind an ALB, secrets injected by ECS, safe deployments."""

from __future__ import annotations

from infra_support import CERTIFICATE_ARN, IMAGE, Evaluate, container_definitions, policy

from infra_pulumi.components.monitoring import deployment_alarm_names
from infra_pulumi.offline import Evaluation

SERVICE = "aws:ecs/service:Service"
LISTENER = "aws:lb/listener:Listener"


def test_cluster_has_container_insights(test_env: Evaluation) -> None:
    cluster = test_env.one("aws:ecs/cluster:Cluster").inputs
    assert cluster["name"] == "migctl-test"
    assert {"name": "containerInsights", "value": "enabled"} in cluster["settings"]


def test_task_definition_takes_the_image_from_config_and_the_password_from_secrets(
    test_env: Evaluation,
) -> None:
    task = test_env.one("aws:ecs/taskDefinition:TaskDefinition").inputs
    assert task["requiresCompatibilities"] == ["FARGATE"] and task["networkMode"] == "awsvpc"
    assert (task["cpu"], task["memory"]) == ("512", "1024")
    (container,) = container_definitions(test_env)
    assert container["image"] == IMAGE and container["name"] == "payment-service"
    secret_arn = test_env.outputs["auroraSecretArn"]
    assert container["secrets"] == [
        {"name": "DB_USERNAME", "valueFrom": f"{secret_arn}:username::"},
        {"name": "DB_PASSWORD", "valueFrom": f"{secret_arn}:password::"},
    ]
    env = {e["name"]: e["value"] for e in container["environment"]}  # type: ignore[union-attr]
    assert env == {
        "DB_HOST": test_env.outputs["auroraEndpoint"],
        "DB_PORT": "5432",
        "DB_NAME": "payments",
    }
    logs = container["logConfiguration"]["options"]  # type: ignore[index]
    assert logs["awslogs-group"] == "/migctl/test/app"
    assert test_env.named("compute-logs-test").inputs["retentionInDays"] == 14


def test_only_the_execution_role_reads_the_database_secret(test_env: Evaluation) -> None:
    document = policy(test_env.named("compute-execution-secret-test").inputs)
    statements = document["Statement"]
    assert statements[0] == {  # type: ignore[index]
        "Effect": "Allow",
        "Action": "secretsmanager:GetSecretValue",
        "Resource": [test_env.outputs["auroraSecretArn"]],
    }
    task = test_env.one("aws:ecs/taskDefinition:TaskDefinition").inputs
    assert task["executionRoleArn"].endswith("role/migctl-app-execution-test")
    assert task["taskRoleArn"].endswith("role/migctl-app-task-test")
    assert not [
        r
        for r in test_env.of_type("aws:iam/rolePolicy:RolePolicy")
        if r.inputs["role"] == "compute-task-role-test-id"
    ]


def test_service_deploys_safely(all_envs: dict[str, Evaluation]) -> None:
    for env, ev in all_envs.items():
        for service in (
            ev.named(f"compute-service-{env}").inputs,
            ev.named(f"compute-standby-{env}").inputs,
        ):
            assert service["launchType"] == "FARGATE"
            assert service["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
            assert service["alarms"] == {
                "alarmNames": deployment_alarm_names(env),
                "enable": True,
                "rollback": True,
            }
            assert set(service["alarms"]["alarmNames"]) <= set(ev.outputs["alarmNames"])
            assert service["networkConfiguration"]["assignPublicIp"] is False
            assert service["networkConfiguration"]["subnets"] == ev.outputs["privateSubnetIds"]
            (lb,) = service["loadBalancers"]
            assert (lb["containerName"], lb["containerPort"]) == ("payment-service", 8080)
    assert all_envs["test"].named("compute-service-test").inputs["desiredCount"] == 1
    assert all_envs["prod"].named("compute-service-prod").inputs["desiredCount"] == 3


def test_the_revision_the_service_runs_belongs_to_rollouts(test_env: Evaluation) -> None:
    """An update of the stack never deploys the program's task definition over the revision a
    rollout shipped: the service ignores changes to its taskDefinition once it exists."""
    assert test_env.named("compute-service-test").ignore_changes == ("taskDefinition",)
    assert test_env.one("aws:ecs/taskDefinition:TaskDefinition").ignore_changes == ()


def test_the_cutover_standby_is_an_idle_twin_behind_its_own_target_group(
    all_envs: dict[str, Evaluation],
) -> None:
    """The standby switch (migctl cutover, switch = standby): a second service, idle, behind a
    second target group, and a listener whose forwarding an update of the stack leaves alone
    (it would switch the traffic back under a cutover)."""
    for env, ev in all_envs.items():
        service, standby = ev.named(f"compute-service-{env}"), ev.named(f"compute-standby-{env}")
        assert standby.inputs["desiredCount"] == 0
        assert standby.ignore_changes == ("taskDefinition", "desiredCount")
        assert standby.inputs["taskDefinition"] == service.inputs["taskDefinition"]
        groups = {s.inputs["loadBalancers"][0]["targetGroupArn"] for s in (service, standby)}
        assert len(groups) == 2, "each service has its own target group"
        forwarding = [
            r for r in ev.of_type(LISTENER) if r.inputs["defaultActions"][0]["type"] == "forward"
        ]
        assert len(forwarding) == 1 and forwarding[0].ignore_changes == ("defaultActions",)
        assert ev.outputs["ecsStandbyServiceName"] == f"migctl-standby-{env}"
        assert ev.outputs["albListenerArn"]


def test_target_group_health_check_path_comes_from_config(
    test_env: Evaluation, run_program: Evaluate
) -> None:
    groups = test_env.of_type("aws:lb/targetGroup:TargetGroup")
    assert len(groups) == 2  # the service's and the cutover standby's
    for group in groups:
        assert group.inputs["targetType"] == "ip"
        assert group.inputs["healthCheck"]["path"] == "/actuator/health"
    custom = run_program(healthCheckPath="/ready")
    for group in custom.of_type("aws:lb/targetGroup:TargetGroup"):
        assert group.inputs["healthCheck"]["path"] == "/ready"


def test_without_a_certificate_the_alb_serves_http_and_says_so(test_env: Evaluation) -> None:
    (listener,) = test_env.of_type(LISTENER)
    assert (listener.inputs["port"], listener.inputs["protocol"]) == (80, "HTTP")
    assert listener.inputs["defaultActions"][0]["type"] == "forward"
    http_warnings = [w for w in test_env.warnings if "certificateArn" in w]
    assert len(http_warnings) == 1 and "plain HTTP" in http_warnings[0]


def test_with_a_certificate_the_alb_serves_https_and_redirects_http(prod_env: Evaluation) -> None:
    listeners = {r.inputs["port"]: r.inputs for r in prod_env.of_type(LISTENER)}
    https = listeners[443]
    assert https["protocol"] == "HTTPS" and https["certificateArn"] == CERTIFICATE_ARN
    assert https["sslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    redirect = listeners[80]["defaultActions"][0]
    assert redirect["type"] == "redirect" and redirect["redirect"]["protocol"] == "HTTPS"
    assert not [w for w in prod_env.warnings if "certificateArn" in w]
    alb = prod_env.one("aws:lb/loadBalancer:LoadBalancer").inputs
    assert alb["enableDeletionProtection"] is True and alb["internal"] is False
