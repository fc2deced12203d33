"""Database: Aurora PostgreSQL with KMS, a managed master secret, IAM auth, logical replication."""

from __future__ import annotations

from infra_support import Evaluate

from infra_pulumi.offline import Evaluation

CLUSTER = "aws:rds/cluster:Cluster"
INSTANCE = "aws:rds/clusterInstance:ClusterInstance"


def test_cluster_is_encrypted_and_its_password_managed(test_env: Evaluation) -> None:
    cluster = test_env.one(CLUSTER).inputs
    key_arn = "arn:aws:kms:us-east-1:123456789012:key/database-key-test"
    assert cluster["engine"] == "aurora-postgresql" and cluster["engineVersion"] == "16.4"
    assert cluster["storageEncrypted"] is True and cluster["kmsKeyId"] == key_arn
    assert cluster["manageMasterUserPassword"] is True
    assert cluster["masterUserSecretKmsKeyId"] == key_arn
    assert cluster["iamDatabaseAuthenticationEnabled"] is True
    assert cluster["backupRetentionPeriod"] == 7
    assert cluster["vpcSecurityGroupIds"] == ["network-db-sg-test-id"]
    assert test_env.outputs["auroraSecretArn"].startswith("arn:aws:secretsmanager:")
    assert test_env.outputs["auroraReaderEndpoint"] != test_env.outputs["auroraEndpoint"]
    key = test_env.one("aws:kms/key:Key").inputs
    assert key["enableKeyRotation"] is True


def test_logical_replication_is_on_for_a_reverse_replication_fallback(test_env: Evaluation) -> None:
    group = test_env.one("aws:rds/clusterParameterGroup:ClusterParameterGroup").inputs
    assert group["family"] == "aurora-postgresql16"
    params = {p["name"]: p["value"] for p in group["parameters"]}
    assert params["rds.logical_replication"] == "1"
    assert test_env.one(CLUSTER).inputs["dbClusterParameterGroupName"] == group["name"]


def test_engine_version_comes_from_config(run_program: Evaluate) -> None:
    ev = run_program(dbEngineVersion="15.8")
    assert ev.one(CLUSTER).inputs["engineVersion"] == "15.8"
    assert ev.one("aws:rds/clusterParameterGroup:ClusterParameterGroup").inputs["family"] == (
        "aurora-postgresql15"
    )


def test_one_instance_outside_production_and_two_in_production(
    test_env: Evaluation, prod_env: Evaluation
) -> None:
    assert len(test_env.of_type(INSTANCE)) == 1
    instances = prod_env.of_type(INSTANCE)
    # Resources register concurrently: their order in the graph is not stable.
    assert sorted(i.inputs["identifier"] for i in instances) == [
        "migctl-aurora-prod-1",
        "migctl-aurora-prod-2",
    ]
    for instance in instances:
        assert instance.inputs["performanceInsightsEnabled"] is True
        assert instance.inputs["publiclyAccessible"] is False
        assert instance.inputs["instanceClass"] == "db.r6g.large"


def test_deletion_protection_and_final_snapshot_follow_the_environment(
    all_envs: dict[str, Evaluation],
) -> None:
    for env, ev in all_envs.items():
        cluster = ev.one(CLUSTER).inputs
        prod = env == "prod"
        assert cluster["deletionProtection"] is prod
        assert cluster["skipFinalSnapshot"] is not prod
        assert ("finalSnapshotIdentifier" in cluster) is prod
    assert (
        all_envs["prod"].one(CLUSTER).inputs["finalSnapshotIdentifier"]
        == "migctl-aurora-prod-final"
    )


def test_database_lives_in_the_isolated_subnets(test_env: Evaluation) -> None:
    group = test_env.one("aws:rds/subnetGroup:SubnetGroup").inputs
    assert group["subnetIds"] == [f"network-isolated-us-east-1{z}-test-id" for z in "abc"]
